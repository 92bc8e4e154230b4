"""`jukebox-tf export` on tiny run directories, and the SavedModel it writes, loaded and run in
a fresh process that has TensorFlow but not jukebox_tf: every signature runs; encode and
decode equal the in-process VQ-VAE; sample, upsample and generate draw exactly the library's
tokens (sampling/windowed.py, modes.py) for the same settings and seed; names map to the
vocabularies' ids in graph; bad requests fail with the graph's own messages;
`saved_model_cli show --all` lists the signatures; the warmup file holds one request per
signature and each of them runs; the serving limits parse against the signatures; versions
are numbered and placed atomically.

One export serves the whole file (module-scoped fixtures); the fresh process runs every call
once and hands the results back in a pickle.
"""

import contextlib
import io
import json
import os
import pickle
import subprocess
import sys

import numpy as np
import pytest

from test_prior_task import write_codes

RATE = 22050
SIGNATURES = ["encode", "decode", "sample", "upsample", "upsample_part", "generate",
              "metadata"]
# The XLA twins, listed last.
COMPILED = ["sample_xla", "upsample_xla", "upsample_part_xla", "generate_xla"]

# Runs in the fresh process: argv = model dir, calls pickle, results pickle.
CLIENT = r'''
import os, pickle, sys
# The checkout's editable install puts jukebox_tf on every path: take it off, as on a server.
sys.meta_path[:] = [f for f in sys.meta_path
                    if not getattr(f, "__module__", type(f).__module__).startswith("__editable__")
                    and not type(f).__module__.startswith("__editable__")]
results = {}
try:
    import jukebox_tf  # noqa: F401
    results["_jukebox_tf_importable"] = True
except ImportError:
    results["_jukebox_tf_importable"] = False
import numpy as np
import tensorflow as tf
from tensorflow_serving.apis import prediction_log_pb2

model_dir, calls_path, out_path = sys.argv[1:4]
loaded = tf.saved_model.load(model_dir)
results["_signatures"] = sorted(loaded.signatures)
with open(calls_path, "rb") as f:
    calls = pickle.load(f)
for key, signature, inputs in calls:
    try:
        out = loaded.signatures[signature](**{k: tf.constant(v) for k, v in inputs.items()})
        results[key] = {k: v.numpy() for k, v in out.items()}
    except tf.errors.OpError as e:
        results[key] = {"_error": type(e).__name__, "_message": e.message}
warmup = []
path = os.path.join(model_dir, "assets.extra", "tf_serving_warmup_requests")
for record in tf.data.TFRecordDataset(path):
    request = prediction_log_pb2.PredictionLog.FromString(record.numpy()).predict_log.request
    inputs = {k: tf.constant(tf.make_ndarray(v)) for k, v in request.inputs.items()}
    out = loaded.signatures[request.model_spec.signature_name](**inputs)
    warmup.append((request.model_spec.name, request.model_spec.signature_name,
                   sorted(out)))
results["_warmup"] = warmup
with open(out_path, "wb") as f:
    pickle.dump(results, f)
'''


# -- fixtures ------------------------------------------------------------------------------

def save_run(task, run_dir, seed=0, std=None, codebook_std=None):
    """A run directory as training leaves it (task.json, a checkpoint with EMA weights), with
    the task's freshly built weights, optionally redrawn ~N(0, std) so that conditioning and
    the settings matter in the logits."""
    import keras
    import tensorflow as tf

    from jukebox_tf.training import checkpoints, run_dir as layout
    from jukebox_tf.training.ema import ExponentialMovingAverage
    from jukebox_tf.training.loop import model_variables

    keras.utils.set_random_seed(seed)
    model = task.build()
    rng = np.random.default_rng(seed)
    for v in model.variables:
        if (std and v.trainable) or (codebook_std and v.path.endswith("codebook")):
            scale = codebook_std if v.path.endswith("codebook") else std
            v.assign(rng.normal(0.0, scale, v.shape).astype(np.float32))
    ema = ExponentialMovingAverage(model.trainable_variables, 0.0)
    writer = checkpoints.CheckpointWriter(
        tf.train.Checkpoint(model=model_variables(model), ema=ema),
        layout.checkpoints_dir(run_dir), keep=1, chief=True)
    writer.save(1)
    writer.close()
    layout.write_json(layout.task_config_path(run_dir), task.config_dict())
    return run_dir


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Tiny runs: a VQ-VAE (hops 8/32/128, 64 codes, 22050 Hz), a top prior with labels and
    lyrics, and two upsamplers, on codes whose vocabularies are (unknown, ann, bob) and
    (unknown, rock, pop). Shallower than the tiny presets: tracing and graph optimisation
    time grow with the layers, and two are enough to exercise every path."""
    import dataclasses

    from jukebox_tf.prior.config import get_preset as prior_preset
    from jukebox_tf.prior.task import PriorTask
    from jukebox_tf.vqvae import get_preset
    from jukebox_tf.vqvae.task import VQVAETask

    root = tmp_path_factory.mktemp("export_runs")
    paths = {"root": root, "vqvae": str(root / "vqvae")}
    save_run(VQVAETask(get_preset("tiny", sample_rate=RATE, depth=1), None, 1), paths["vqvae"],
             codebook_std=0.05)
    codes = write_codes(str(root / "codes"))
    manifest_path = os.path.join(codes, "codes.json")
    with open(manifest_path) as f:
        manifest = json.load(f)
    manifest.update(sample_rate=RATE, vqvae_run=os.path.abspath(paths["vqvae"]))
    with open(manifest_path, "w") as f:
        json.dump(manifest, f)
    for name, level, preset in (("top", 2, "tiny"), ("up1", 1, "tiny_upsampler"),
                                ("up0", 0, "tiny_upsampler")):
        base = dataclasses.replace(prior_preset(preset), depth=2, lyric_depth=1,
                                   cond_depth=1)
        task = PriorTask.from_codes(base, codes, level, 1, lyrics=level == 2)
        paths[name] = save_run(task, str(root / name), seed=level + 1, std=0.1)
    return paths


def export_args(*argv):
    import argparse

    from jukebox_tf.cli import export as export_cmd

    parser = argparse.ArgumentParser(prog="jukebox-tf")
    export_cmd.register(parser.add_subparsers(dest="command"))
    return parser.parse_args(["export", *map(str, argv)])


def export_cli(*argv, expect=0):
    """`jukebox-tf export ARGV` in this process (as cli.main runs it): (stdout, stderr)."""
    from jukebox_tf.errors import JukeboxError

    args = export_args(*argv)
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = args.func(args)
        except JukeboxError as e:
            print(f"jukebox-tf export: error: {e}", file=sys.stderr)
            code = 2
    assert code == expect, f"exit {code}\n{out.getvalue()}\n{err.getvalue()}"
    return out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def exported(runs):
    """`jukebox-tf export` into a base that already holds version 3 and a stray folder, run
    as cli/export.py's `run` does it but in its two steps, so that the tests compare with the
    very models it loaded (`hierarchy`)."""
    import time

    from jukebox_tf.cli import export as export_cmd

    base = runs["root"] / "models" / "jukebox"
    (base / "3").mkdir(parents=True)
    (base / "7-partial").mkdir()
    args = export_args("--prior", runs["top"], "--upsamplers", runs["up0"], runs["up1"],
                       "--out", base, "--max-seconds", 5)
    started = time.perf_counter()
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        export_cmd.check_args(args)
        loaded = export_cmd.load_runs(args)
        result = export_cmd.export_runs(args, loaded)
    return {"base": str(base), "path": result.path, "log": err.getvalue(),
            "seconds": time.perf_counter() - started, "hierarchy": loaded}


@pytest.fixture(scope="module")
def hierarchy(exported):
    """The runs as the export loaded them (as `jukebox-tf sample` loads them)."""
    return exported["hierarchy"]


def _strings(*values):
    return np.array([v.encode() for v in values], dtype=object)


def _rows(value, dtype, n=2):
    return np.full([n], value, dtype)


def _settings(temperature=0.9, top_k=20, top_p=0.95, seed=7, n=2):
    """Per-row settings; seeds seed, seed + 1, ... as the library gives the rows of one seed."""
    return {"temperature": _rows(temperature, np.float32, n), "top_k": _rows(top_k, np.int32, n),
            "top_p": _rows(top_p, np.float32, n), "seed": np.arange(seed, seed + n, dtype=np.int64)}


def sample_inputs(**overrides):
    rng = np.random.default_rng(5)
    inputs = {"artist": _strings("ann ", "BOB"), "genres": _strings("Rock; pop", ""),
              "lyrics": _strings("la la la, LA", "hello world"),
              "total_seconds": _rows(4.0, np.float32), "offset_seconds": _rows(0.5, np.float32),
              "n_tokens": _rows(80, np.int32), **_settings(),
              "prime": rng.integers(0, 64, (2, 5)).astype(np.int32)}
    return {**inputs, **overrides}


def merged(*requests):
    """One request holding all of `requests`' rows, as stock TF Serving's batcher builds it
    (BatchingSession::MergeInputTensors: every input concatenated along dimension 0)."""
    return {name: np.concatenate([r[name] for r in requests]) for name in requests[0]}


AUDIO = (np.random.default_rng(1).normal(0, 0.3, (2, 1000))).astype(np.float32)
TOP_CODES = np.random.default_rng(2).integers(0, 64, (2, 20)).astype(np.int32)
L1_CODES = np.random.default_rng(3).integers(0, 64, (2, 8)).astype(np.int32)
# The library's samplers are traced per prior, settings and batch size: the calls that are
# compared with it share settings (_settings()) and a batch of 2 where they can.
UPSAMPLE = {"artist": _strings("bob", "nobody"), "genres": _strings("pop", "jazz rock"),
            "total_seconds": _rows(0.0, np.float32), "offset_seconds": _rows(0.25, np.float32),
            **_settings(seed=11)}
GENERATE = {"artist": _strings("Ann", "ann"), "genres": _strings("rock", "ROCK"),
            "lyrics": _strings("la", "la"), "seconds": _rows(0.03, np.float32),
            "total_seconds": _rows(0.0, np.float32), **_settings(seed=3)}
# Requests that a batcher may merge: same input shapes, different everything else.
ALONE = {
    "sample_a": sample_inputs(artist=_strings("ann"), genres=_strings("rock"),
                              lyrics=_strings("la la"), total_seconds=_rows(4.0, np.float32, 1),
                              offset_seconds=_rows(0.5, np.float32, 1),
                              n_tokens=_rows(80, np.int32, 1), **_settings(n=1),
                              prime=np.arange(5, dtype=np.int32)[None]),
    "sample_b": sample_inputs(artist=_strings("bob"), genres=_strings(""),
                              lyrics=_strings("hello"), total_seconds=_rows(0.0, np.float32, 1),
                              offset_seconds=_rows(0.0, np.float32, 1),
                              n_tokens=_rows(40, np.int32, 1),
                              **_settings(0.7, 0, 0.5, 100, n=1),
                              prime=np.arange(5, 10, dtype=np.int32)[None]),
    "decode_a": {"codes": TOP_CODES[:1, :6], "level": _rows(0, np.int32, 1)},
    "decode_b": {"codes": TOP_CODES[1:, :6], "level": _rows(2, np.int32, 1)},
    "upsample_a": {"codes": L1_CODES[:1], "level": _rows(1, np.int32, 1),
                   **{k: v[:1] for k, v in UPSAMPLE.items()}},
    "upsample_b": {"codes": L1_CODES[1:], "level": _rows(0, np.int32, 1),
                   **{k: v[1:] for k, v in UPSAMPLE.items()}, **_settings(0.0, 5, 0.0, 2, n=1)},
    "generate_a": {k: v[:1] for k, v in GENERATE.items()},
    "generate_b": {**{k: v[1:] for k, v in GENERATE.items()},
                   "seconds": _rows(0.015, np.float32, 1), **_settings(1.1, 3, 0.9, 40, n=1)},
}


def calls():
    """(key, signature, inputs) run by the fresh process."""
    return [
        ("encode", "encode", {"audio": AUDIO, "sample_rate": _rows(RATE, np.int32)}),
        *[(f"decode_l{level}", "decode",
           {"codes": np.random.default_rng(level).integers(0, 64, (2, 6)).astype(np.int32),
            "level": _rows(level, np.int32)}) for level in range(3)],
        ("sample", "sample", sample_inputs()),
        ("sample_again", "sample", sample_inputs()),
        ("sample_seed8", "sample", sample_inputs(seed=np.array([8, 9], np.int64))),
        ("sample_ids", "sample", sample_inputs(artist=_strings("1", "2"),
                                               genres=_strings("1 2", "0"))),
        ("sample_greedy", "sample", sample_inputs(
            artist=_strings("zzz"), genres=_strings("??"), lyrics=_strings(""),
            total_seconds=_rows(0.0, np.float32, 1), offset_seconds=_rows(0.0, np.float32, 1),
            n_tokens=_rows(10, np.int32, 1), prime=np.zeros([0, 0], np.int32),
            **_settings(0.0, 0, 0.0, 1, n=1))),
        ("upsample", "upsample", {"codes": TOP_CODES, "level": _rows(1, np.int32), **UPSAMPLE}),
        ("upsample_l0", "upsample", {"codes": L1_CODES, "level": _rows(0, np.int32),
                                     **UPSAMPLE}),
        ("generate", "generate", GENERATE),
        ("sample_xla", "sample_xla", sample_inputs()),
        ("upsample_l0_xla", "upsample_xla", {"codes": L1_CODES, "level": _rows(0, np.int32),
                                             **UPSAMPLE}),
        ("generate_xla", "generate_xla", GENERATE),
        ("metadata", "metadata", {"rows": np.zeros([1], np.int32)}),
        *[(key, key.split("_")[0], inputs) for key, inputs in ALONE.items()],
        *[(f"{name}_merged", name, merged(ALONE[f"{name}_a"], ALONE[f"{name}_b"]))
          for name in ("sample", "decode", "upsample", "generate")],
        ("bad_rate", "encode", {"audio": AUDIO, "sample_rate": np.array([RATE, 16000],
                                                                         np.int32)}),
        ("short_audio", "encode", {"audio": AUDIO[:, :100],
                                   "sample_rate": _rows(RATE, np.int32)}),
        ("bad_codes", "decode", {"codes": np.array([[1, 64]], np.int32),
                                 "level": _rows(0, np.int32, 1)}),
        ("bad_level", "decode", {"codes": np.array([[1]], np.int32),
                                 "level": _rows(3, np.int32, 1)}),
        ("bad_prime", "sample", sample_inputs(prime=np.full([2, 3], -1, np.int32))),
        ("long_prime", "sample", sample_inputs(n_tokens=np.array([80, 3], np.int32))),
        ("bad_upsample_level", "upsample", {"codes": TOP_CODES, "level": np.array([1, 2],
                                                                                  np.int32),
                                            **UPSAMPLE}),
        ("bad_batch", "sample", sample_inputs(lyrics=_strings("one"))),
        ("bad_settings_batch", "sample", sample_inputs(seed=np.zeros([3], np.int64))),
        ("bad_top_p", "generate", {**GENERATE, "top_p": np.array([0.5, 1.5], np.float32)}),
    ]


class Client:
    """The fresh process running every call of calls(), and `saved_model_cli show --all`,
    started at once and waited for only when a test needs them (the library's own results
    are computed meanwhile)."""

    def __init__(self, model_dir: str, work):
        (work / "client.py").write_text(CLIENT)
        with open(work / "calls.pkl", "wb") as f:
            pickle.dump(calls(), f)
        self.results_path = work / "results.pkl"
        # Isolated mode (no PYTHON* variables, no user site), the checkout's editable install
        # taken off in the script, the working directory outside the checkout.
        env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
        env["TF_CPP_MIN_LOG_LEVEL"] = "2"
        self.client = subprocess.Popen(
            [sys.executable, "-I", str(work / "client.py"), model_dir, str(work / "calls.pkl"),
             str(self.results_path)], cwd=str(work), env=env, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True)
        cli = os.path.join(os.path.dirname(sys.executable), "saved_model_cli")
        self.cli = subprocess.Popen([cli, "show", "--all", "--dir", model_dir], cwd=str(work),
                                    env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                    text=True)
        self._results = self._cli_output = None

    def results(self) -> dict:
        if self._results is None:
            _, err = self.client.communicate(timeout=600)
            assert self.client.returncode == 0, err[-4000:]
            with open(self.results_path, "rb") as f:
                self._results = pickle.load(f)
        return self._results

    def cli_output(self) -> str:
        if self._cli_output is None:
            out, err = self.cli.communicate(timeout=600)
            assert self.cli.returncode == 0, err[-4000:]
            self._cli_output = out
        return self._cli_output

    def close(self):
        for proc in (self.client, self.cli):
            if proc.poll() is None:
                proc.kill()
                proc.communicate()


@pytest.fixture(scope="module")
def client(exported, tmp_path_factory):
    client = Client(exported["path"], tmp_path_factory.mktemp("client"))
    yield client
    client.close()


@pytest.fixture
def served(client):
    return client.results()


def ok(served, key):
    result = served[key]
    assert "_error" not in result, f"{key}: {result.get('_error')}: {result.get('_message')}"
    return result


def library_labels(prior, rows, total, offset):
    from jukebox_tf.prior.labels import make_labels

    return np.stack([make_labels(total, offset, 0, artist, genres,
                                 prior.config.max_genre_words) for artist, genres in rows])


def folder_bytes(path):
    return sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(path) for f in fs)


# -- versions and the command line (quick) -------------------------------------------------------

def test_versions_are_numbered_and_placed_atomically(tmp_path):
    from jukebox_tf.errors import JukeboxError
    from jukebox_tf.export import existing_versions, next_version, write_version

    base = str(tmp_path / "base")
    assert next_version(base) == 1
    seen = []

    def write(folder, version):
        seen.append((os.path.basename(folder), version))
        assert not os.path.basename(folder).isdigit()  # a name no server takes for a version
        assert os.path.dirname(folder) == base  # same filesystem: the rename is atomic
        with open(os.path.join(folder, "saved_model.pb"), "w") as f:
            f.write(str(version))

    assert write_version(base, write) == (os.path.join(base, "1"), 1)
    os.makedirs(os.path.join(base, "10.tmp"))
    os.makedirs(os.path.join(base, "5"))
    assert write_version(base, write)[1] == 6
    assert write_version(base, write, version=2)[1] == 2
    assert existing_versions(base) == [1, 2, 5, 6]
    assert oct(os.stat(os.path.join(base, "6")).st_mode & 0o777) == oct(0o755)
    with pytest.raises(JukeboxError, match="version 5 was exported already"):
        write_version(base, write, version=5)

    def fail(folder, version):
        with open(os.path.join(folder, "half"), "w") as f:
            f.write("x")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        write_version(base, fail)
    assert sorted(os.listdir(base)) == ["1", "10.tmp", "2", "5", "6"]

    def race(folder, version):  # another export places the same version meanwhile
        os.makedirs(os.path.join(base, str(version)))

    with pytest.raises(JukeboxError, match="appeared while exporting"):
        write_version(base, race)
    assert sorted(os.listdir(base)) == ["1", "10.tmp", "2", "5", "6", "7"]
    assert [v for _, v in seen] == [1, 6, 2]


def test_cli_checks_its_arguments_before_loading_anything(tmp_path):
    (tmp_path / "base" / "4").mkdir(parents=True)
    _, err = export_cli("--prior", tmp_path / "no-run", "--out", tmp_path / "base",
                        "--version", "4", expect=2)
    assert "version 4 was exported already" in err and "next one, 5" in err
    _, err = export_cli("--out", tmp_path / "base", expect=2)
    assert "nothing to export" in err
    _, err = export_cli("--prior", tmp_path / "no-run", "--out", tmp_path / "base", expect=2)
    assert "no-run: no such directory" in err


def test_the_xla_twins_are_written_by_default_only_for_priors_a_cpu_compiles(
        hierarchy, monkeypatch):
    """Export's default follows `sample --xla` auto: the released 1B and 5B priors (over
    AUTO_XLA_MAX_CPU_PARAMS weights) get no twins unless --xla asks for them."""
    from jukebox_tf.export import export as export_lib
    from jukebox_tf.sampling import prior_api

    assert export_args("--out", "b").xla is None
    assert export_args("--out", "b", "--xla").xla is True
    assert export_args("--out", "b", "--no-xla").xla is False
    assert export_lib.twins_by_default(hierarchy.priors)
    largest = max(prior_api.n_params(p) for p in hierarchy.priors if p is not None)
    monkeypatch.setattr(export_lib, "AUTO_XLA_MAX_CPU_PARAMS", largest - 1)
    assert not export_lib.twins_by_default(hierarchy.priors)
    assert export_lib.twins_by_default([None, hierarchy.priors[0]]) == (
        prior_api.n_params(hierarchy.priors[0]) < largest)


# -- the export ----------------------------------------------------------------------------

@pytest.mark.slow
def test_export_writes_the_next_version_with_assets(exported, client):
    base, path = exported["base"], exported["path"]
    assert path == os.path.join(base, "4")  # after the existing 3; "7-partial" is no version
    assert sorted(os.listdir(base)) == ["3", "4", "7-partial"]  # no temporary folder left
    for rel in ("saved_model.pb", "variables/variables.index", "assets/metadata.json",
                "assets/artists.txt", "assets/genres.txt", "assets.extra/serving_limits.json",
                "assets.extra/tf_serving_warmup_requests"):
        assert os.path.isfile(os.path.join(path, rel)), rel
    assert oct(os.stat(path).st_mode & 0o777) == oct(0o755)
    with open(os.path.join(path, "assets", "metadata.json")) as f:
        meta = json.load(f)
    assert meta["version"] == 4 and meta["sample_rate"] == RATE
    assert meta["hop_lengths"] == [8, 32, 128] and meta["codebook_size"] == 64
    assert meta["n_ctx"] == [64, 64, 64] and meta["generated_levels"] == [0, 1, 2]
    assert meta["artists"] == ["unknown", "ann", "bob"]
    assert sorted(meta["signatures"]) == sorted(SIGNATURES + COMPILED)
    with open(os.path.join(path, "assets", "genres.txt")) as f:
        assert f.read().split("\n") == ["unknown", "rock", "pop", ""]
    assert "signatures: " + ", ".join(SIGNATURES + COMPILED) in exported["log"]
    from jukebox_tf.sampling.streaming import receptive_field

    vqvae = exported["hierarchy"].vqvae  # what a streaming client decodes with
    assert meta["decoder_receptive_field"] == [
        receptive_field(vqvae.decoders[level], vqvae.config.emb_width) for level in range(3)]
    print(f"\nexport: {exported['seconds']:.0f} s (with loading the runs), "
          f"{folder_bytes(path) / 2**20:.1f} MiB")


# -- sample / upsample / generate: the library's tokens ------------------------------------------
# Each computes the library's result first, while the fresh process runs, then waits for it.

@pytest.mark.slow
def test_sample_draws_the_library_tokens(client, hierarchy):
    from jukebox_tf.prior import lyrics as lyrics_lib
    from jukebox_tf.sampling.windowed import sample_level

    top = hierarchy.priors[2]
    inputs = sample_inputs()
    labels = library_labels(top, [(1, [1, 2]), (2, [0])], 88200, 11025)
    lyrics = lyrics_lib.pad_tokens([lyrics_lib.encode("la la la, LA"),
                                    lyrics_lib.encode("hello world")])
    expected = sample_level(top, 80, (8, 32, 128), labels=labels, lyrics=lyrics,
                            prime=inputs["prime"], temperature=0.9, top_k=20, top_p=0.95,
                            seed=7, progress=False)
    codes = ok(client.results(), "sample")["codes"]
    assert codes.shape == (2, 80)  # 3 windows of 64 with the top level's hop of 8
    np.testing.assert_array_equal(codes[:, :5], inputs["prime"])
    np.testing.assert_array_equal(codes, expected)
    # The CLI's default, XLA, draws the same noise: the same tokens as the uncompiled graph.
    compiled = sample_level(top, 80, (8, 32, 128), labels=labels, lyrics=lyrics,
                            prime=inputs["prime"], temperature=0.9, top_k=20, top_p=0.95,
                            seed=7, progress=False, jit_compile=True)
    np.testing.assert_array_equal(codes, compiled)


@pytest.mark.slow
def test_greedy_sample_with_unknown_names_and_no_prime(client, hierarchy):
    from jukebox_tf.prior import lyrics as lyrics_lib
    from jukebox_tf.sampling.windowed import sample_level

    top = hierarchy.priors[2]
    labels = library_labels(top, [(0, [0])], 10 * 128, 0)  # unknown artist and genre
    expected = sample_level(top, 10, (8, 32, 128), labels=labels,
                            lyrics=lyrics_lib.pad_tokens([[]]), n_samples=1, temperature=0.0,
                            seed=1, progress=False)
    np.testing.assert_array_equal(ok(client.results(), "sample_greedy")["codes"], expected)


@pytest.mark.slow
def test_upsample_draws_the_library_tokens(client, hierarchy):
    from jukebox_tf.sampling.windowed import upsample

    hops = (8, 32, 128)
    up1, up0 = hierarchy.priors[1], hierarchy.priors[0]
    offset = int(np.float32(0.25) * RATE)
    settings = dict(temperature=0.9, top_k=20, top_p=0.95, seed=11, progress=False)
    rows = [(2, [2]), (0, [0, 1])]  # bob / pop; nobody / jazz (unknown) rock
    expected1 = upsample(up1, TOP_CODES, hops, labels=library_labels(
        up1, rows, 20 * 128 + offset, offset), **settings)
    expected0 = upsample(up0, L1_CODES, hops, labels=library_labels(
        up0, rows, 8 * 32 + offset, offset), **settings)
    served = client.results()
    codes = ok(served, "upsample")["codes"]
    assert codes.shape == (2, 80)  # two windows of 64 at level 1
    np.testing.assert_array_equal(codes, expected1)
    np.testing.assert_array_equal(ok(served, "upsample_l0")["codes"], expected0)
    compiled0 = upsample(up0, L1_CODES, hops, labels=library_labels(
        up0, rows, 8 * 32 + offset, offset), jit_compile=True, **settings)
    np.testing.assert_array_equal(compiled0, expected0)


@pytest.mark.slow
def test_generate_runs_the_whole_hierarchy_as_the_library(client, hierarchy):
    from jukebox_tf.sampling.modes import decode_codes, sample_codes
    from jukebox_tf.sampling.settings import SamplingSettings

    codes = sample_codes("ancestral", hierarchy.vqvae, hierarchy.priors, SamplingSettings(
        seconds=float(np.float32(0.03)), n_samples=2, artist_id=1, genre_ids=[1], lyrics="la",
        temperatures=0.9, top_k=20, top_p=0.95, seed=3), progress=False)
    audio = decode_codes(hierarchy.vqvae, {0: codes[0]})[0][..., 0]
    out = ok(client.results(), "generate")
    for level, n in ((2, 5), (1, 20), (0, 80)):  # 0.03 s -> 5 top-level codes
        assert out[f"codes_l{level}"].shape == (2, n)
        np.testing.assert_array_equal(out[f"codes_l{level}"], codes[level])
    assert out["audio"].shape == (2, 640) and out["audio"].dtype == np.float32
    np.testing.assert_allclose(out["audio"], audio, rtol=1e-5, atol=1e-6)


@pytest.mark.slow
def test_xla_twins_draw_the_plain_signatures_tokens(served):
    """The *_xla signatures (each window one XLA cluster) draw what the plain graph draws."""
    for key in ("sample", "upsample_l0", "generate"):
        compiled, plain = ok(served, f"{key}_xla"), ok(served, key)
        assert sorted(compiled) == sorted(plain)
        for name, value in plain.items():
            if name == "audio":
                np.testing.assert_allclose(compiled[name], value, rtol=1e-5, atol=1e-6)
            else:
                np.testing.assert_array_equal(compiled[name], value, err_msg=f"{key}: {name}")


@pytest.mark.slow
def test_merged_requests_get_what_they_get_alone(served):
    """Two requests merged as stock TF Serving's batcher merges them (inputs concatenated
    along dimension 0), differing in seed, settings, conditioning and in the value that sets
    their length (n_tokens, level, seconds): each row is what its request gets alone, padded
    to the longer row (codes with -1, audio with 0)."""
    for name in ("sample", "decode", "upsample", "generate"):
        together = ok(served, f"{name}_merged")
        for row, key in enumerate((f"{name}_a", f"{name}_b")):
            alone = ok(served, key)
            assert set(alone) == set(together)
            for output, value in alone.items():
                got = together[output][row:row + 1]
                length = value.shape[1]
                assert got.shape[1] >= length, (key, output)
                pad = -1 if value.dtype == np.int32 else 0.0
                assert (got[:, length:] == pad).all(), (key, output)
                if value.dtype == np.int32:
                    np.testing.assert_array_equal(got[:, :length], value, err_msg=key)
                else:
                    np.testing.assert_allclose(got[:, :length], value, rtol=1e-5, atol=1e-6,
                                               err_msg=key)
    sample = ok(served, "sample_merged")["codes"]
    assert sample.shape == (2, 80) and (sample[1, 40:] == -1).all() and (sample[0] >= 0).all()
    assert ok(served, "decode_merged")["audio"].shape == (2, 6 * 128)
    generated = ok(served, "generate_merged")
    assert generated["audio"].shape == (2, 640) and generated["codes_l0"].shape == (2, 80)
    assert (generated["codes_l0"][1, 32:] == -1).all()  # 0.015 s: 2 top-level codes, 256 samples


@pytest.mark.slow
def test_every_signature_takes_and_returns_batches(exported):
    """What stock TF Serving's batcher (--enable_batching) needs of every signature it
    serves: at least one input, and every input and output with an open dimension 0."""
    from serving.servable import read_meta_graph

    meta_graph = read_meta_graph(exported["path"])
    # __saved_model_init_op is the tables' initialiser, which TF Serving runs at load time.
    served = {n: s for n, s in meta_graph.signature_def.items() if not n.startswith("__")}
    assert set(served) == set(SIGNATURES + COMPILED + ["serving_default"])
    for name, sig in served.items():
        assert sig.inputs, name
        for kind, tensors in (("input", sig.inputs), ("output", sig.outputs)):
            for key, info in tensors.items():
                dims = [d.size for d in info.tensor_shape.dim]
                assert not info.tensor_shape.unknown_rank and dims and dims[0] == -1, (
                    name, kind, key, dims)


# -- the fresh process's other results -------------------------------------------------------

@pytest.mark.slow
def test_encode_and_decode_equal_the_in_process_vqvae(client, hierarchy):
    vqvae = hierarchy.vqvae
    expected = [c.numpy() for c in vqvae.encode(AUDIO[:, :896, None])]  # whole top codes
    decoded = [vqvae.decode(np.random.default_rng(level).integers(0, 64, (2, 6)).astype(
        np.int32), level).numpy()[..., 0] for level in range(3)]
    served = client.results()
    out = ok(served, "encode")
    for level, codes in enumerate(expected):
        np.testing.assert_array_equal(out[f"codes_l{level}"], codes)
    assert out["codes_l0"].shape == (2, 112) and out["codes_l2"].shape == (2, 7)
    for level in range(3):
        audio = ok(served, f"decode_l{level}")["audio"]
        assert audio.shape == (2, 6 * (8, 32, 128)[level])
        np.testing.assert_allclose(audio, decoded[level], rtol=1e-5, atol=1e-6)


@pytest.mark.slow
def test_sample_is_deterministic_per_seed_and_maps_names_to_ids(served):
    codes = ok(served, "sample")["codes"]
    np.testing.assert_array_equal(ok(served, "sample_again")["codes"], codes)
    other = ok(served, "sample_seed8")["codes"]
    assert other.shape == codes.shape and (other[:, 5:] != codes[:, 5:]).mean() > 0.2
    # "ann " / "BOB" and genres "Rock; pop" / "" are ids 1 / 2 and [1, 2] / [0].
    np.testing.assert_array_equal(ok(served, "sample_ids")["codes"], codes)
    for key in ("sample", "sample_seed8", "sample_greedy", "upsample", "generate"):
        for name, values in ok(served, key).items():
            if name != "audio":
                assert values.dtype == np.int32 and values.min() >= 0 and values.max() < 64


@pytest.mark.slow
def test_fresh_process_without_jukebox_tf_loads_every_signature(served):
    assert served["_jukebox_tf_importable"] is False
    assert served["_signatures"] == sorted(SIGNATURES + COMPILED + ["serving_default"])


@pytest.mark.slow
def test_metadata_signature(served):
    meta = {name: value[0] for name, value in ok(served, "metadata").items()}  # one row
    assert meta["sample_rate"] == RATE and meta["channels"] == 1
    assert meta["hop_lengths"].tolist() == [8, 32, 128] and meta["codebook_size"] == 64
    assert meta["n_ctx"].tolist() == [64, 64, 64] and meta["version"] == 4
    assert [a.decode() for a in meta["artists"]] == ["unknown", "ann", "bob"]
    assert [g.decode() for g in meta["genres"]] == ["unknown", "rock", "pop"]
    info = json.loads(meta["metadata_json"].decode())
    assert info["lyrics"] is True and info["n_lyric_tokens"] == 32
    assert info["max_genre_words"] == [4, 4, 4] and info["version"] == 4
    assert info["levels"] == 3 and info["prior_levels"] == [0, 1, 2]


@pytest.mark.slow
@pytest.mark.parametrize("key, words", [
    ("bad_rate", "encode: sample_rate must be 22050"),
    ("short_audio", "encode: audio needs at least 128 samples"),
    ("bad_codes", "codes: codes must be in [0, 64)"),
    ("bad_level", "decode: level must be in [0, 3)"),
    ("bad_prime", "prime: codes must be in [0, 64)"),
    ("long_prime", "sample: prime is longer than n_tokens"),
    ("bad_upsample_level", "upsample: level must be one of [0, 1]"),
    ("bad_batch", "lyrics must have one row per sample"),
    ("bad_settings_batch", "seed must have one row per sample (as many as artist)"),
    ("bad_top_p", "top_p must be in [0, 1]"),
])
def test_bad_requests_fail_in_graph_with_a_clear_message(served, key, words):
    result = served[key]
    assert result.get("_error") == "InvalidArgumentError", result
    assert words in result["_message"], result["_message"][:500]


# -- serving files ---------------------------------------------------------------------------

@pytest.mark.slow
def test_warmup_file_has_one_request_per_signature_and_each_runs(exported, served):
    from jukebox_tf.export import WARMUP_FILE, read_warmup

    requests = read_warmup(os.path.join(exported["path"], WARMUP_FILE))
    assert [r.model_spec.signature_name for r in requests] == SIGNATURES
    assert {r.model_spec.name for r in requests} == {"jukebox"}
    ran = served["_warmup"]  # (model, signature, output names) per request, in order
    assert [signature for _, signature, _ in ran] == SIGNATURES
    assert dict((s, outputs) for _, s, outputs in ran)["encode"] == [
        "codes_l0", "codes_l1", "codes_l2"]


@pytest.mark.slow
def test_serving_limits_parse_against_the_signatures(exported):
    from serving.servable import read_meta_graph, read_model_rules
    from serving.validation import SignatureSpec

    path = exported["path"]
    rules = read_model_rules(path)
    meta_graph = read_meta_graph(path)
    assert set(rules) == set(SIGNATURES + COMPILED + ["serving_default"]) - {"metadata"}
    for name, inputs in rules.items():
        spec = SignatureSpec.from_signature_def(name, meta_graph.signature_def[name], inputs)
        assert set(inputs) <= set(spec.inputs)
    assert rules["decode"]["codes"]["max"] == 63 and rules["sample"]["prime"]["allow_empty"]
    assert rules["encode"]["sample_rate"] == {"min": RATE, "max": RATE}
    assert rules["generate"]["seconds"]["max"] == 5.0  # --max-seconds
    assert np.float32(128 / RATE) >= rules["generate"]["seconds"]["min"]  # one top-level code
    assert rules["serving_default"] == rules["generate"] == rules["generate_xla"]
    # serving_default is generate under a second name.
    default, generate = (meta_graph.signature_def[n] for n in ("serving_default", "generate"))
    for a, b in ((default.inputs, generate.inputs), (default.outputs, generate.outputs)):
        assert {k: (v.dtype, v.tensor_shape) for k, v in a.items()} == {
            k: (v.dtype, v.tensor_shape) for k, v in b.items()}


@pytest.mark.slow
def test_no_gradient_functions_are_saved(exported):
    """The custom gradients' functions (one per call site of a LayerNorm or convolution)
    stay out: a Python load rebuilt every one of them, 8 GB for the released 1B hierarchy."""
    from tensorflow.core.protobuf import saved_model_pb2

    saved = saved_model_pb2.SavedModel()
    with open(os.path.join(exported["path"], "saved_model.pb"), "rb") as f:
        saved.ParseFromString(f.read())
    [meta_graph] = saved.meta_graphs
    names = [f.signature.name for f in meta_graph.graph_def.library.function]
    assert any("__inference__generate" in name for name in names)
    assert not [name for name in names if "grad_fn" in name]


@pytest.mark.slow
def test_saved_model_cli_lists_the_signatures(client):
    text = client.cli_output()
    for name in SIGNATURES + COMPILED + ["serving_default"]:
        assert f"signature_def['{name}']" in text
    # A few inputs, with their dtypes and shapes.
    assert ("inputs['sample_rate'] tensor_info:\n        dtype: DT_INT32\n        shape: (-1)"
            in text)
    assert "inputs['prime'] tensor_info:\n        dtype: DT_INT32\n        shape: (-1, -1)" in text
    assert "inputs['artist'] tensor_info:\n        dtype: DT_STRING\n        shape: (-1)" in text
