"""The whole TFX pipeline, end to end on tiny data, with LocalDagRunner and SQLite ML Metadata.

Three runs share one pipeline root (module fixture): `jukebox-tf demo` (the pipeline, then a
clip generated through the served model), the same pipeline again (cached), and one whose
top-level prior is trained zero steps (broken: must not be blessed or pushed; a VQ-VAE
trained zero steps is refused the same way in test_pipeline_eval_push.py).
"""

import json
import os

import pytest

pytestmark = pytest.mark.slow

from conftest import run_cli  # noqa: E402
from pipeline import local_runner  # noqa: E402
from pipeline.configs import get_config  # noqa: E402
from pipeline.metadata import custom_property, last_run, open_store, upstream  # noqa: E402

STEPS = dict(vqvae_steps=80, prior_steps=150, upsampler_steps=60)
TRAINED_COMPONENTS = ("AudioExampleGen", "StatisticsGen", "SchemaGen", "VQVAETrainer", "CodeGen",
                      "TopPriorTrainer", "UpsamplerTrainerL1", "UpsamplerTrainerL0",
                      "ModelExport")


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    audio, root, serving = out / "audio", out / "pipeline", out / "models" / "jukebox"
    audio.mkdir()
    (audio / "broken.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunkjunkjunk")
    demo = run_cli("demo", "--out", out, "--artists", "2", "--tracks-per-artist", "2",
                   "--track-seconds", "6", *(f"--{k.replace('_', '-')}={v}"
                                             for k, v in STEPS.items()),
                   "--sample-seconds", "0.5", check=True, timeout=1800)
    results = {"demo": demo, "out": out, "root": root, "serving": str(serving)}
    for name, steps in (("first", None), ("again", STEPS),
                        ("broken", dict(STEPS, prior_steps=0))):
        if steps is not None:
            local_runner.run(str(audio), str(root), get_config("tiny", **steps),
                             serving_model_dir=str(serving))
        with open_store(str(root)) as store:
            results[name] = last_run(store)
        results[name + "_versions"] = sorted(os.listdir(serving))
    return results


def test_demo_generates_through_the_pushed_model_and_says_where_things_are(runs):
    out, stdout = runs["out"], runs["demo"].stdout
    assert (out / "served" / "clip.wav").exists() and (out / "served" / "clip.png").exists()
    assert (out / "served" / "index.html").read_text().count("<audio") == 1
    assert f"listen:       {out / 'served' / 'index.html'}" in stdout
    assert f"tensorboard --logdir {runs['root']}" in stdout
    assert "rejected broken.wav" in stdout and "blessed" in stdout


def test_first_run_completes_blesses_and_pushes_version_1(runs):
    first = runs["first"]
    for name in TRAINED_COMPONENTS + ("JukeboxEvaluator", "LocalInfraValidator", "Pusher"):
        assert first[name].state == "COMPLETE", (name, first[name].state)
    assert custom_property(first["JukeboxEvaluator"].output("blessing"), "blessed") == 1
    assert custom_property(first["LocalInfraValidator"].output("blessing"), "blessed") == 1
    assert runs["first_versions"] == ["1"]
    version = os.path.join(runs["serving"], "1")
    assert os.path.isfile(os.path.join(version, "saved_model.pb"))
    assert os.path.isfile(os.path.join(version, "assets.extra", "tf_serving_warmup_requests"))


def test_corrupt_file_is_reported_and_splits_never_share_a_track(runs):
    examples = runs["first"]["AudioExampleGen"].output("examples")
    assert custom_property(examples, "files_rejected") == 1
    with open(os.path.join(examples.uri, "ingest_report.json")) as f:
        report = json.load(f)
    assert [r["path"] for r in report["rejected"]] == ["broken.wav"]
    tracks = {}
    for split in ("train", "eval"):
        with open(os.path.join(examples.uri, f"Split-{split}", "dataset.json")) as f:
            tracks[split] = {t["track_id"] for t in json.load(f)["tracks"]}
    assert tracks["train"] and tracks["eval"] and not tracks["train"] & tracks["eval"]
    assert len(tracks["train"] | tracks["eval"]) == 4


def test_statistics_and_schema_describe_the_audio_features(runs):
    from tensorflow_metadata.proto.v0 import schema_pb2
    from tfx.utils import io_utils

    schema_dir = runs["first"]["SchemaGen"].output("schema").uri
    schema = io_utils.parse_pbtxt_file(os.path.join(schema_dir, "schema.pbtxt"),
                                       schema_pb2.Schema())
    features = {f.name: f for f in schema.feature}
    assert {"audio", "num_samples", "sample_rate", "track_id", "artist_id"} <= set(features)
    assert features["audio"].type == schema_pb2.BYTES
    assert features["num_samples"].type == schema_pb2.INT
    assert list(features["audio"].annotation.comment) == [
        "bytes: int16 little-endian PCM, interleaved [num_samples, channels]"]
    assert all(f.annotation.comment for f in schema.feature), "every feature is documented"


def test_lineage_traces_the_pushed_model_back_to_the_examples(runs):
    first = runs["first"]
    pushed = first["Pusher"].output("pushed_model")
    with open_store(str(runs["root"])) as store:
        ancestors = upstream(store, pushed.id)
    ids = {a.id for a in ancestors}
    assert first["ModelExport"].output("model").id in ids
    assert first["VQVAETrainer"].output("model").id in ids
    assert first["CodeGen"].output("codes").id in ids
    assert first["AudioExampleGen"].output("examples").id in ids


def test_second_run_reuses_cached_outputs(runs):
    again = runs["again"]
    for name in TRAINED_COMPONENTS + ("LocalInfraValidator",):
        assert again[name].state == "CACHED", (name, again[name].state)
        assert (again[name].outputs.keys() == runs["first"][name].outputs.keys())
    assert runs["again_versions"] == ["1"], "the same model must not be pushed twice"


def test_broken_model_is_not_blessed_and_not_pushed(runs):
    broken = runs["broken"]
    assert broken["VQVAETrainer"].state == "CACHED"
    assert broken["TopPriorTrainer"].state == "COMPLETE"
    assert custom_property(broken["JukeboxEvaluator"].output("blessing"), "blessed") == 0
    assert custom_property(broken["Pusher"].output("pushed_model"), "pushed", 0) == 0
    assert runs["broken_versions"] == ["1"]
    metrics_path = os.path.join(broken["JukeboxEvaluator"].output("evaluation").uri,
                                "metrics.json")
    with open(metrics_path) as f:
        failed = [c for c in json.load(f)["checks"] if not c["passed"]]
    assert failed and {c["metric"] for c in failed} == {"bits_per_token/l2"}, failed
