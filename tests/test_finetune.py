"""Fine-tuning: `train-prior --init-from` and `train-vqvae --init-from` start from another run's
weights with that run's architecture; artist and genre names are mapped onto the model's
vocabulary (new names get new rows at the mean of the old ones) or replaced; frozen parts stay
bit for bit; a fine-tune resumes; bad starting runs and codes are refused before training."""

import argparse
import contextlib
import io
import json
import os
import shutil

import numpy as np
import pytest

from jukebox_tf.errors import JukeboxError
from jukebox_tf.prior.task import PriorTask, load_prior_run, prior_run_info
from test_export import RATE, runs  # noqa: F401 (fixture)
from test_prior_task import numpy_batch, write_codes

# (top-level tokens, artist id, genre ids, lyrics): bob with pop and jazz, cleo with jazz.
TRACKS = [(150, 1, [1, 2], "la la la"), (70, 2, [2], "")]


def parse(*argv):
    from jukebox_tf.cli import prior as prior_cli, vqvae as vqvae_cli

    parser = argparse.ArgumentParser()
    commands = parser.add_subparsers(dest="command")
    prior_cli.register(commands)
    vqvae_cli.register(commands)
    return parser.parse_args([str(a) for a in argv])


def run_cli(*argv):
    args = parse(*argv)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert args.func(args) == 0
    return out.getvalue()


def new_codes(path, runs, **manifest_changes):  # noqa: F811
    """Codes of other music, encoded by the runs' VQ-VAE: artists bob (known to the top
    prior) and cleo (new), genres pop (known) and jazz (new)."""
    codes = write_codes(str(path), TRACKS, artists=("unknown", "bob", "cleo"),
                        genres=("unknown", "pop", "jazz"))
    manifest_path = os.path.join(codes, "codes.json")
    with open(manifest_path) as f:
        manifest = json.load(f)
    manifest.update(sample_rate=RATE, vqvae_run=os.path.abspath(runs["vqvae"]),
                    **manifest_changes)
    with open(manifest_path, "w") as f:
        json.dump(manifest, f)
    return codes


def weights(run, use_ema=True):
    model = load_prior_run(str(run), use_ema=use_ema)
    # Without the model's own name, which Keras numbers per process.
    return model, {v.path.partition("/")[2]: v.numpy() for v in model.variables}


def finetune(runs, codes, out, *flags, steps=2):  # noqa: F811
    return run_cli("train-prior", "--level", 2, "--codes", codes, "--init-from", runs["top"],
                   "--out", out, "--steps", steps, "--batch-size", 2, "--quiet",
                   "--log-every", 1, "--checkpoint-every", 1, *flags)


def label_tables(values):
    [artist] = [v for k, v in values.items() if k.endswith("artist_emb")]
    [genre] = [v for k, v in values.items() if k.endswith("genre_emb")]
    return artist, genre


def test_step_zero_is_the_starting_model_with_new_names_at_the_mean(runs, tmp_path):  # noqa: F811
    codes = new_codes(tmp_path / "codes", runs)
    finetune(runs, codes, tmp_path / "ft", steps=0)
    info = prior_run_info(str(tmp_path / "ft"))
    assert info["codes"]["artists"] == ["unknown", "ann", "bob", "cleo"]
    assert info["codes"]["genres"] == ["unknown", "rock", "pop", "jazz"]
    assert info["init_from"] == {"run": os.path.abspath(runs["top"]), "labels": "map"}
    _, start = weights(runs["top"])
    _, ft = weights(tmp_path / "ft")
    for path, value in start.items():
        if not path.endswith(("artist_emb", "genre_emb")):
            np.testing.assert_array_equal(ft[path], value, err_msg=path)
    for old, new in zip(label_tables(start), label_tables(ft)):
        np.testing.assert_array_equal(new[:3], old)
        np.testing.assert_array_equal(new[3], old.mean(0, dtype=np.float64).astype(np.float32))

    # The codes' ids become the model's: bob 1 -> 2, cleo 2 -> 3; pop 1 -> 2, jazz 2 -> 3.
    task = PriorTask.from_run(runs["top"], codes, 2, 2)
    labels = numpy_batch(task, batch_size=64)["labels"]
    assert set(labels[:, 3]) == {2, 3}
    genres = {(a, tuple(g for g in row if g >= 0)) for a, row in zip(labels[:, 3], labels[:, 4:])}
    assert genres == {(2, (2, 3)), (3, (3,))}


def test_fine_tune_freezes_resumes_and_samples_the_new_artist(runs, tmp_path):  # noqa: F811
    from test_cli_sample import sample

    codes, out = new_codes(tmp_path / "codes", runs), tmp_path / "ft"
    first = finetune(runs, codes, out, "--freeze", "labels", "layers:1", "--weight-decay",
                     0.01, "--lr", 0.01, steps=2)
    assert "step 2" in first
    _, start = weights(runs["top"])
    for use_ema in (True, False):
        _, ft = weights(out, use_ema)
        frozen = [p for p in start if p.endswith(("artist_emb", "genre_emb"))
                  or p.startswith("transformer/block_0/")]
        assert len(frozen) > 2
        for path in frozen:
            value = ft[path][:len(start[path])]
            np.testing.assert_array_equal(value, start[path], err_msg=path)
        changed = [p for p in start if p.startswith("transformer/block_1/")
                   and not np.array_equal(ft[p], start[p])]
        assert changed, "the unfrozen layer did not train"
    config = json.loads((out / "train_config.json").read_text())
    assert config["weight_decay"] == 0.01 and config["decay"] == "linear"

    with pytest.raises(JukeboxError, match="freezes labels layers:1"):
        run_cli("train-prior", "--level", 2, "--codes", codes, "--out", out, "--steps", 4,
                "--resume", "--freeze", "labels", "--quiet")
    again = run_cli("train-prior", "--level", 2, "--codes", codes, "--out", out, "--steps", 4,
                    "--batch-size", 2, "--resume", "--quiet")
    assert "step 4" in again
    assert prior_run_info(str(out))["codes"]["artists"] == ["unknown", "ann", "bob", "cleo"]
    _, resumed = weights(out)
    for path in frozen:
        np.testing.assert_array_equal(resumed[path][:len(start[path])], start[path])

    _, stderr = sample("--prior", out, "--mode", "ancestral", "--artist", "Cleo", "--genre",
                       "jazz", "--seconds", 0.2, "--seed", 1, "-o", tmp_path / "s", "--quiet")
    assert "unknown artist" not in stderr and "unknown genre" not in stderr
    assert (tmp_path / "s" / "codes.npz").exists()


def test_labels_replace_starts_the_label_tables_afresh(runs, tmp_path):  # noqa: F811
    # With mixed precision, as a large prior would be tuned: the weights stay float32.
    codes = new_codes(tmp_path / "codes", runs)
    out = finetune(runs, codes, tmp_path / "ft", "--labels", "replace", "--mixed-precision",
                   "bfloat16", steps=1)
    assert "step 1" in out
    info = prior_run_info(str(tmp_path / "ft"))
    assert info["codes"]["artists"] == ["unknown", "bob", "cleo"]
    _, start = weights(runs["top"])
    _, ft = weights(tmp_path / "ft")
    for old, new in zip(label_tables(start), label_tables(ft)):
        assert new.shape == (3, old.shape[1]) and not np.allclose(new, old[:3])
    task = PriorTask.from_run(runs["top"], codes, 2, 2, labels="replace")
    assert set(numpy_batch(task, batch_size=64)["labels"][:, 3]) == {1, 2}


@pytest.mark.parametrize("case", ["not_a_run", "vqvae_run", "level", "l_bins", "hop_lengths",
                                  "preset", "freeze", "freeze_layers", "labels_alone",
                                  "no_checkpoint"])
def test_bad_starting_points_are_refused_before_training(runs, tmp_path, case):  # noqa: F811
    changes = {"l_bins": {"l_bins": 32}, "hop_lengths": {"hop_lengths": [8, 32, 256]}}
    codes = new_codes(tmp_path / "codes", runs, **changes.get(case, {}))
    start, level, extra = runs["top"], 2, []
    if case == "not_a_run":
        start = tmp_path
    elif case == "vqvae_run":
        start = runs["vqvae"]
    elif case == "level":
        level = 1
    elif case == "no_checkpoint":
        start = tmp_path / "empty_run"
        shutil.copytree(runs["top"], start)
        shutil.rmtree(start / "checkpoints")
    extra = {"preset": ["--preset", "tiny"], "freeze": ["--freeze", "embedding"],
             "freeze_layers": ["--freeze", "layers:3"]}.get(case, [])
    argv = ["train-prior", "--level", level, "--codes", codes, "--out", tmp_path / "ft",
            "--steps", 1, "--quiet", *extra]
    if case == "labels_alone":
        argv += ["--labels", "replace"]
    else:
        argv += ["--init-from", start]
    expected = {
        "not_a_run": "is not a prior run directory", "vqvae_run": "not a prior run",
        "level": "a prior of level 2, not of level 1",
        "l_bins": "l_bins 32, but the model of .* reads codes with l_bins 64",
        "hop_lengths": r"hop_lengths \[8, 32, 256\], but .* \[8, 32, 128\]",
        "preset": "--preset would change it", "freeze": "--freeze embedding: not a part",
        "freeze_layers": "--freeze layers:3: N must be .* 1 to the prior's 2 layers",
        "labels_alone": "need --init-from", "no_checkpoint": "no checkpoint to start from"}
    args = parse(*argv)
    with pytest.raises(JukeboxError, match=expected[case]):
        args.func(args)
    assert not (tmp_path / "ft" / "checkpoints").exists()


# --- on demo music ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def demo_codes(runs, tmp_path_factory):  # noqa: F811
    """Demo music encoded by the runs' VQ-VAE: `seen` (two artists, the starting model's
    music), `new` (two tracks of a third artist) and `held_out` (that artist's third track);
    `*_data`: the ingested audio."""
    from jukebox_tf.audio.demo_data import make_demo_data
    from jukebox_tf.audio.ingest import IngestConfig, ingest
    from jukebox_tf.codes.encode import encode_dataset
    from jukebox_tf.vqvae.task import load_vqvae_run

    root = tmp_path_factory.mktemp("demo_music")
    make_demo_data(str(root / "audio"), seed=1, num_artists=3, tracks_per_artist=3,
                   track_seconds=6.0, sample_rate=RATE)
    *seen, third = sorted(p.name for p in (root / "audio").iterdir() if p.is_dir())
    tracks = sorted(p.relative_to(root / "audio") for p in (root / "audio").glob("*/*"))
    keep = {"seen": [t for t in tracks if t.parts[0] in seen][::2],  # two per artist
            "new": [t for t in tracks if t.parts[0] == third][:2],
            "held_out": [t for t in tracks if t.parts[0] == third][2:]}
    for name, kept in keep.items():  # the metadata's rows for absent files are skipped
        shutil.copytree(root / "audio", root / f"{name}_audio")
        for track in set(tracks) - set(kept):
            os.remove(root / f"{name}_audio" / track)
    vqvae = load_vqvae_run(runs["vqvae"])
    paths = {}
    for name in ("seen", "new", "held_out"):
        ingest(str(root / f"{name}_audio"), str(root / f"{name}_data"), IngestConfig(
            sample_rate=RATE, chunk_seconds=3.0, workers=1), progress=False)
        paths[name] = str(root / f"{name}_codes")
        encode_dataset(vqvae, str(root / f"{name}_data"), paths[name], progress=False,
                       source_run=runs["vqvae"])
        paths[f"{name}_data"] = str(root / f"{name}_data")
    return paths


def bits_on(run, codes):
    from jukebox_tf.prior.evaluate import evaluate_prior
    from jukebox_tf.prior.label_vocab import LabelVocab

    vocab = LabelVocab.from_codes_info(prior_run_info(str(run))["codes"])
    return evaluate_prior(load_prior_run(str(run)), codes, vocab=vocab)["bits_per_token"]


@pytest.mark.slow
def test_fine_tuning_on_new_music_lowers_its_held_out_bits(demo_codes, tmp_path):
    from jukebox_tf.codes.format import load_codes_manifest

    seen, new = (load_codes_manifest(demo_codes[k])["artists"] for k in ("seen", "new"))
    assert len(new) == 2 and new[1] not in seen  # an artist the starting model never heard
    common = ("--level", 2, "--steps", 40, "--batch-size", 4, "--lr", 1e-3, "--quiet")
    run_cli("train-prior", "--codes", demo_codes["seen"], "--preset", "tiny", "--out",
            tmp_path / "start", *common)
    run_cli("train-prior", "--codes", demo_codes["new"], "--init-from", tmp_path / "start",
            "--out", tmp_path / "ft", *common)
    start, tuned = (bits_on(tmp_path / r, demo_codes["held_out"]) for r in ("start", "ft"))
    assert tuned < start - 0.05, (start, tuned)
    assert prior_run_info(str(tmp_path / "ft"))["codes"]["artists"] == seen + new[1:]


@pytest.mark.slow
def test_vqvae_fine_tune_with_frozen_encoder_and_codebook_keeps_the_codes(
        runs, demo_codes, tmp_path):  # noqa: F811
    from jukebox_tf.vqvae.task import load_vqvae_run

    out = tmp_path / "vq"
    run_cli("train-vqvae", "--data", demo_codes["new_data"], "--init-from", runs["vqvae"],
            "--freeze", "encoder", "codebook", "--steps", 3, "--batch-size", 2, "--out", out,
            "--quiet")
    saved = json.loads((out / "task.json").read_text())
    assert saved["init_from"] == {"run": os.path.abspath(runs["vqvae"])}
    assert saved["data_stats"] and saved["vqvae"]["l_bins"] == 64
    start, tuned = load_vqvae_run(runs["vqvae"]), load_vqvae_run(str(out))

    def values(model):
        return {v.path.partition("/")[2]: v.numpy() for v in model.variables}

    a, b = values(start), values(tuned)
    kept = [p for p in a if p.startswith(("encoder_", "bottleneck_"))]
    assert any(p.endswith("codebook") for p in kept)
    for path in kept:
        np.testing.assert_array_equal(a[path], b[path], err_msg=path)
    assert any(not np.array_equal(a[p], b[p]) for p in a if p.startswith("decoder_"))
    audio = np.random.default_rng(0).uniform(-0.5, 0.5, (1, 4096)).astype(np.float32)
    for x, y in zip(start.encode(audio), tuned.encode(audio)):
        np.testing.assert_array_equal(x.numpy(), y.numpy())

    args = parse("train-vqvae", "--data", demo_codes["new_data"], "--init-from", runs["top"],
                 "--steps", 1, "--out", tmp_path / "bad", "--quiet")
    with pytest.raises(JukeboxError, match="not a VQ-VAE run"):
        args.func(args)
    args = parse("train-vqvae", "--data", demo_codes["new_data"], "--init-from", runs["vqvae"],
                 "--preset", "tiny", "--steps", 1, "--out", tmp_path / "bad", "--quiet")
    with pytest.raises(JukeboxError, match="--preset would change it"):
        args.func(args)


@pytest.fixture(scope="module")
def released(tmp_path_factory):
    """(VQ-VAE run, top prior run) imported from the released 5B model's files (the fixtures:
    the original's format and layout at small sizes, v2 names, no EMA)."""
    from jukebox_tf.released.importer import import_weights
    from test_import_end_to_end import FIXTURES

    return import_weights(
        "openai", "5b", [os.path.join(FIXTURES, "openai", f"{f}.pth.tar")
                         for f in ("vqvae", "5b_prior_level_2")],
        str(tmp_path_factory.mktemp("released") / "runs"),
        vocab_files=[os.path.join(FIXTURES, "vocab", f) for f in (
            "v2_artist_ids.txt", "v2_genre_ids.txt")], progress=lambda message: None)


@pytest.mark.slow
def test_fine_tune_an_imported_released_prior_keeps_its_names(released, tmp_path):
    """Known names keep their ids however they are spelled, new ones are appended, the
    weights start as imported, and sampling with the new artist works."""
    from test_cli_sample import sample

    vqvae, top = released
    known = prior_run_info(top)["codes"]
    codes = write_codes(str(tmp_path / "codes"), TRACKS,
                        artists=("unknown", "June & the Moths", "Cleo Nova"),
                        genres=("unknown", "Jazz", "synthwave"))
    with open(os.path.join(codes, "codes.json")) as f:
        manifest = json.load(f)
    manifest.update({k: known[k] for k in ("sample_rate", "hop_lengths", "l_bins")},
                    vqvae_run=vqvae)
    with open(os.path.join(codes, "codes.json"), "w") as f:
        json.dump(manifest, f)
    out = tmp_path / "ft"
    run_cli("train-prior", "--level", 2, "--codes", codes, "--init-from", top, "--out", out,
            "--steps", 0, "--quiet")
    info = prior_run_info(str(out))["codes"]
    bins = len(known["artists"])
    assert info["label_names"] == "v2" and info["artists"][:bins] == known["artists"]
    assert info["artists"][bins:] == ["Cleo Nova"]
    assert info["genres"][len(known["genres"]):] == ["synthwave"]
    task = PriorTask.from_run(top, codes, 2, 2)
    assert set(numpy_batch(task, batch_size=64)["labels"][:, 3]) == {5, bins}  # june_the_moths
    _, start = weights(top, use_ema=False)
    _, ft = weights(out)
    for path, value in start.items():
        np.testing.assert_array_equal(ft[path][:len(value)], value, err_msg=path)
    _, stderr = sample("--prior", out, "--mode", "ancestral", "--artist", "cleo nova",
                       "--genre", "synthwave", "--seconds", 0.1, "-o", tmp_path / "s", "--quiet")
    assert "unknown artist" not in stderr and "unknown genre" not in stderr


@pytest.mark.slow
def test_music_encoded_by_the_released_vqvae_fine_tunes_the_released_prior(released, tmp_path):
    """The chain for the released models: ingest at 44.1 kHz, `encode` with the imported
    VQ-VAE, `train-prior --init-from` the imported top prior on those codes."""
    from jukebox_tf.audio.demo_data import make_demo_data
    from jukebox_tf.audio.ingest import IngestConfig, ingest
    from jukebox_tf.codes.format import load_codes_manifest

    vqvae, top = released
    make_demo_data(str(tmp_path / "audio"), seed=3, num_artists=1, tracks_per_artist=2,
                   track_seconds=2.0, sample_rate=44100)
    manifest = ingest(str(tmp_path / "audio"), str(tmp_path / "data"), IngestConfig(
        sample_rate=44100, chunk_seconds=2.0, workers=1), progress=False)
    run_cli("encode", "--run", vqvae, "--data", tmp_path / "data", "--out", tmp_path / "codes",
            "--quiet")
    assert load_codes_manifest(str(tmp_path / "codes"))["vqvae_run"] == os.path.abspath(vqvae)
    out = run_cli("train-prior", "--level", 2, "--codes", tmp_path / "codes", "--init-from", top,
                  "--out", tmp_path / "ft", "--steps", 2, "--batch-size", 2, "--quiet")
    assert "step 2" in out
    artists = prior_run_info(str(tmp_path / "ft"))["codes"]["artists"]
    assert artists[-1] == manifest["artists"][1]  # the demo artist, new to the model
