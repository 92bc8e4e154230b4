"""The pipeline on a remote filesystem: every URI under ram://, standing in for gs://.

ram:// is TensorFlow's in-memory filesystem, made visible to Beam and TFX by
`ram_filesystem`. One module fixture runs the whole local pipeline with `jukebox-tf pipeline
run` (LocalDagRunner, tiny preset, one training step per model) with its audio, pipeline root
and serving base path under ram:// (only the SQLite ML Metadata is local, `--metadata`), from
an empty working folder and with an empty temporary folder: a path handed to plain file I/O
would fail, or land as `./ram:/...` in the working folder. The barely trained model is not
blessed, so the Pusher is then driven directly with blessings, to a ram:// base path.
"""

import collections
import contextlib
import io
import json
import os
import re
import tempfile
import uuid

import pytest
import tensorflow as tf

import ram_filesystem
from jukebox_tf import storage

pytestmark = pytest.mark.slow

COMPONENTS = ("AudioExampleGen", "StatisticsGen", "SchemaGen", "VQVAETrainer", "CodeGen",
              "TopPriorTrainer", "UpsamplerTrainerL1", "UpsamplerTrainerL0", "ModelExport",
              "JukeboxEvaluator", "LocalInfraValidator", "Pusher")


def _config():
    from pipeline.configs import get_config

    return get_config("tiny", vqvae_steps=1, prior_steps=1, upsampler_steps=1,
                      chunk_seconds=2.0, max_eval_chunks=4)


def _pipeline_run(*args) -> tuple[int, str, str]:
    """`jukebox-tf pipeline run ARGS` in this process (ram:// lives in its memory) with the
    test's config: (exit code, stdout, stderr)."""
    import pipeline.cli
    from jukebox_tf.cli import main

    out, err = io.StringIO(), io.StringIO()
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(pipeline.cli, "config_from_args", lambda args: _config())
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main(["pipeline", "run", *map(str, args)])
    return code, out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    from jukebox_tf.audio.demo_data import make_demo_data
    from pipeline.metadata import last_run, open_store

    local = tmp_path_factory.mktemp("remote_fs")
    make_demo_data(local / "audio", seed=1, num_artists=2, tracks_per_artist=2,
                   track_seconds=3.0, sample_rate=22050)
    (local / "audio" / "broken.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunkjunkjunk")
    remote = f"ram://{uuid.uuid4().hex}"
    storage.copytree(str(local / "audio"), f"{remote}/audio")
    cwd, tmp = local / "cwd", local / "tmp"
    cwd.mkdir()
    tmp.mkdir()
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(cwd)
        mp.setenv("TMPDIR", str(tmp))
        mp.setattr(tempfile, "tempdir", str(tmp))
        serving = f"{remote}/serving/jukebox"
        code, summary, err = _pipeline_run(
            "--data", f"{remote}/audio", "--root", f"{remote}/pipeline", "--serving-dir",
            serving, "--metadata", local / "metadata.sqlite")
    assert code == 0, err
    with open_store(str(local / "metadata.sqlite")) as store:
        nodes = last_run(store)
    yield {"local": local, "remote": remote, "serving": serving, "nodes": nodes,
           "cwd": cwd, "tmp": tmp, "summary": summary}
    ram_filesystem.clear(remote)


def _uri(run, component, key):
    return run["nodes"][component].output(key).uri


def test_every_component_runs_and_writes_only_under_ram(run):
    for name in COMPONENTS:
        assert run["nodes"][name].state == "COMPLETE", (name, run["nodes"][name].state)
        for artifacts in run["nodes"][name].outputs.values():
            assert all(a.uri.startswith(run["remote"] + "/pipeline/") for a in artifacts)
    assert os.listdir(run["cwd"]) == [], "a ram:// path was used as a local one"
    # Only this project's temporary folders: TF's autograph and TFX's packaging leave theirs.
    ours = [n for n in os.listdir(run["tmp"])
            if n.startswith(("jukebox-", "infra-validation-", "eval-codes-"))]
    assert ours == [], "temporary files were left behind"
    assert sorted(os.listdir(run["local"])) == ["audio", "cwd", "metadata.sqlite", "tmp"]
    written = ram_filesystem.files(f"{run['remote']}/pipeline")
    for expected in ("Split-train/dataset.json", "ingest_report.json", "schema.pbtxt",
                     "Format-Serving/task.json", "Split-eval/codes.json",
                     "Format-Serving/saved_model.pb", "metrics.json", "NOT_BLESSED",
                     "INFRA_BLESSED", "infra_validation.json"):
        assert any(f.endswith("/" + expected) for f in written), expected
    assert not [f for f in written if ".tmp-" in f or ".audio-example-gen" in f]


def _chunks_by_track(paths, compression):
    out = collections.defaultdict(set)
    for record in tf.data.TFRecordDataset(paths, compression_type=compression):
        raw = record.numpy()
        track = tf.train.Example.FromString(raw).features.feature["track_id"].bytes_list.value[0]
        out[track.decode()].add(raw)
    return dict(out)


def test_examples_are_the_chunks_a_local_ingest_writes(run, tmp_path):
    from jukebox_tf.audio.dataset import load_manifest
    from jukebox_tf.audio.ingest import IngestConfig, ingest

    config = _config()
    reference = ingest(str(run["local"] / "audio"), str(tmp_path / "ingested"),
                       IngestConfig(sample_rate=config.sample_rate,
                                    chunk_seconds=config.chunk_seconds, workers=1),
                       progress=False)
    want = _chunks_by_track([str(tmp_path / "ingested" / s["file"])
                             for s in reference["shards"]], "")
    examples = _uri(run, "AudioExampleGen", "examples")
    got = {}
    for split in ("train", "eval"):
        split_dir = f"{examples}/Split-{split}"
        manifest = load_manifest(split_dir)
        chunks = _chunks_by_track([f"{split_dir}/{s['file']}" for s in manifest["shards"]],
                                  "GZIP")
        assert chunks and not set(chunks) & set(got)
        got.update(chunks)
    assert got == want and len(want) == 4
    with storage.open(f"{examples}/ingest_report.json") as f:
        report = json.load(f)
    assert [r["path"] for r in report["rejected"]] == ["broken.wav"]
    assert report["input_dir"] == f"{run['remote']}/audio"


def test_codes_are_what_encode_writes_from_the_same_run(run, tmp_path):
    from jukebox_tf.codes.encode import encode_dataset
    from jukebox_tf.codes.format import load_codes_manifest, read_codes
    from jukebox_tf.vqvae.task import load_vqvae_run

    vqvae_run = _uri(run, "VQVAETrainer", "model") + "/Format-Serving"
    examples, codes = _uri(run, "AudioExampleGen", "examples"), _uri(run, "CodeGen", "codes")
    for split in ("train", "eval"):
        local_split = tmp_path / split
        storage.copytree(f"{examples}/Split-{split}", str(local_split))
        encode_dataset(load_vqvae_run(vqvae_run), str(local_split), str(tmp_path / f"ref-{split}"),
                       progress=False)

        def key(records):
            return sorted((r["track_id"], r["offset"], r["codes_l0"].tobytes(),
                           r["codes_l2"].tobytes()) for r in records)

        assert key(read_codes(f"{codes}/Split-{split}")) == key(
            read_codes(str(tmp_path / f"ref-{split}")))
        assert load_codes_manifest(f"{codes}/Split-{split}")["vqvae_run"] == vqvae_run


def test_evaluation_matches_the_same_model_evaluated_from_local_copies(run, tmp_path):
    from pipeline.components.evaluator import evaluate_model

    model = _uri(run, "ModelExport", "model")
    with storage.open(_uri(run, "JukeboxEvaluator", "evaluation") + "/metrics.json") as f:
        metrics = json.load(f)
    assert metrics["blessed"] is False  # one training step
    storage.copytree(model, str(tmp_path / "model"))
    storage.copytree(_uri(run, "AudioExampleGen", "examples") + "/Split-eval",
                     str(tmp_path / "eval"))
    local = evaluate_model(str(tmp_path / "model"), str(tmp_path / "eval"),
                           max_eval_chunks=_config().max_eval_chunks, max_eval_windows=64)
    assert metrics["current"].keys() == local.keys()
    for key, value in local.items():
        assert metrics["current"][key] == pytest.approx(value, rel=1e-4, abs=1e-5), key


def test_infra_validator_serves_a_local_copy_of_the_remote_model(run):
    with storage.open(_uri(run, "LocalInfraValidator", "blessing")
                      + "/infra_validation.json") as f:
        report = json.load(f)
    assert report["blessed"], report["reason"]
    assert report["model_dir"] == _uri(run, "ModelExport", "model") + "/Format-Serving"
    assert sorted(r["signature"] for r in report["requests"]) == sorted(
        ["encode", "decode", "sample", "upsample", "upsample_part", "generate", "metadata"])


def _push(run, model_uri, name):
    from tfx.proto import pusher_pb2
    from tfx.types import standard_artifacts
    from tfx.utils import proto_utils

    from pipeline.components import pusher

    def artifact(kind, uri, **props):
        a = kind()
        a.uri = uri
        for key, value in props.items():
            a.set_int_custom_property(key, value)
        return a

    work = f"{run['remote']}/push/{name}"
    pushed = artifact(standard_artifacts.PushedModel, f"{work}/pushed")
    destination = pusher_pb2.PushDestination(
        filesystem=pusher_pb2.PushDestination.Filesystem(base_directory=run["serving"]))
    pusher.Executor().Do(
        {"model": [artifact(standard_artifacts.Model, model_uri)],
         "model_blessing": [artifact(standard_artifacts.ModelBlessing, f"{work}/mb", blessed=1)],
         "infra_blessing": [artifact(standard_artifacts.InfraBlessing, f"{work}/ib",
                                     blessed=1)]},
        {"pushed_model": [pushed]},
        {"push_destination": proto_utils.proto_to_json(destination), "custom_config": "null"})
    return pushed


def test_pusher_writes_integer_versions_to_a_remote_base(run):
    from serving.model_manager import scan_versions

    base, model = run["serving"], _uri(run, "ModelExport", "model")
    assert base == f"{run['remote']}/serving/jukebox"
    in_pipeline = run["nodes"]["Pusher"].output("pushed_model")
    assert in_pipeline.custom_properties["pushed"].int_value == 0  # not blessed there
    assert not storage.exists(base)

    first = _push(run, model, "first")
    again = _push(run, model, "again")
    assert again.get_int_custom_property("already_pushed") == 1
    other = f"{run['remote']}/other"  # another model: the same files but one
    storage.copytree(f"{model}/Format-Serving", f"{other}/Format-Serving")
    limits = f"{other}/Format-Serving/assets.extra/serving_limits.json"
    with storage.open(limits) as f:
        text = f.read()
    with storage.open(limits, "w") as f:
        f.write(text + "\n")
    second = _push(run, other, "second")
    assert sorted(storage.listdir(base)) == ["1", "2"]  # no temporary folder left behind
    assert sorted(scan_versions(base)) == [1, 2]
    assert os.listdir(run["cwd"]) == []
    for pushed, version, source in ((first, "1", model), (second, "2", other)):
        assert pushed.get_string_custom_property("pushed_destination") == f"{base}/{version}"
        assert ram_filesystem.files(f"{base}/{version}") == ram_filesystem.files(
            f"{source}/Format-Serving")
        for rel in ("saved_model.pb", "assets.extra/serving_limits.json"):
            with storage.open(f"{source}/Format-Serving/{rel}", "rb") as a, \
                    storage.open(f"{base}/{version}/{rel}", "rb") as b:
                assert a.read() == b.read()


def test_summary_reads_the_local_metadata_and_the_remote_outputs(run):
    summary, remote = run["summary"], run["remote"]
    assert f"pipeline root {remote}/pipeline (ML Metadata {run['local'] / 'metadata.sqlite'})" \
        in summary
    for name in COMPONENTS:
        assert re.search(rf"^  {name} +complete$", summary, re.M), (name, summary)
    assert "rejected broken.wav" in summary  # the ingest report, read from ram://
    assert "NOT blessed" in summary and f"serving base path {run['serving']}" in summary
    assert f"tensorboard --logdir {remote}/pipeline" in summary


def test_a_uri_root_needs_a_local_metadata_file(run, tmp_path):
    remote = run["remote"]
    code, _, err = _pipeline_run("--data", f"{remote}/audio", "--root", f"{remote}/refused")
    assert code == 2 and f"--root '{remote}/refused' is not a local folder: give --metadata" in err
    code, _, err = _pipeline_run("--data", f"{remote}/audio", "--root", tmp_path,
                                 "--metadata", f"{remote}/metadata.sqlite")
    assert code == 2 and "ML Metadata's SQLite file must be local" in err
    code, _, err = _pipeline_run("--data", f"{remote}/missing", "--root", tmp_path)
    assert code == 2 and f"--data '{remote}/missing': not a folder" in err
    assert not storage.exists(f"{remote}/refused")  # refused before anything was written
