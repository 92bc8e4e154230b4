"""The pipeline's evaluation, infra validation and push (pipeline/components/evaluator.py,
infra_validator.py, pusher.py) and the library evaluations they call
(jukebox_tf/vqvae/evaluate.py, jukebox_tf/prior/evaluate.py).

One module fixture trains a tiny hierarchy on tiny synthesized 8 kHz data with the library
(VQ-VAE and priors a few steps each), exports it, and lays out ModelExport-style artifacts
(`<uri>/Format-Serving` = the exported version, `<uri>/runs/{vqvae,level2,level1,level0}`),
plus a model whose VQ-VAE was never trained. The executors' `Do` run directly on artifacts.
"""

import dataclasses
import json
import os
import shutil

import numpy as np
import pytest
import tensorflow as tf
from tfx.types import artifact_utils, standard_artifacts

RATE = 8000
VQ_STEPS = 25
PRIOR_STEPS = 25
EVAL_CHUNKS = 4


def _vqvae_config():
    from jukebox_tf.vqvae import get_preset

    return get_preset("tiny", sample_rate=RATE, sample_length=2048, depth=1)


def _model_dir(root, runs: dict, export_from=None):
    """A ModelExport output folder: copies of the runs where `model_export.run_dirs` says,
    Format-Serving = an exported version's contents (moved from `export_from`)."""
    from pipeline.components.model_export import run_dirs

    for name, path in run_dirs(str(root)).items():
        shutil.copytree(runs[name], path)
    if export_from:
        os.rename(export_from, os.path.join(root, "Format-Serving"))
    return str(root)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    from test_export import save_run

    from jukebox_tf.audio.demo_data import make_demo_data
    from jukebox_tf.audio.ingest import IngestConfig, ingest
    from jukebox_tf.export import export_models
    from jukebox_tf.prior.label_vocab import LabelVocab
    from jukebox_tf.prior import get_preset as prior_preset
    from jukebox_tf.prior.task import PriorTask, load_prior_run
    from jukebox_tf.training import TrainConfig, train
    from jukebox_tf.codes.encode import encode_dataset
    from jukebox_tf.vqvae.task import VQVAETask, compute_data_statistics, load_vqvae_run

    root = tmp_path_factory.mktemp("eval_push")
    make_demo_data(root / "audio", seed=0, num_artists=2, tracks_per_artist=2,
                   track_seconds=3.0, sample_rate=RATE)
    dataset = str(root / "dataset")
    manifest = ingest(str(root / "audio"), dataset,
                      IngestConfig(sample_rate=RATE, chunk_seconds=1.5, workers=1),
                      progress=False)
    runs = {"vqvae": str(root / "vqvae")}
    # The loss normalisers from 20 s of windows rather than the default 10 minutes.
    stats = compute_data_statistics(dataset, _vqvae_config(), seconds=20)
    train(VQVAETask(_vqvae_config(), dataset, 4, stats),
          TrainConfig(steps=VQ_STEPS, global_batch_size=4, learning_rate=2e-3, warmup_steps=2,
                      checkpoint_every=VQ_STEPS, media_every=1000), runs["vqvae"],
          progress=False)
    vqvae = load_vqvae_run(runs["vqvae"])
    encode_dataset(vqvae, dataset, str(root / "codes"), progress=False)
    for level, preset in ((2, "tiny"), (1, "tiny_upsampler"), (0, "tiny_upsampler")):
        base = dataclasses.replace(prior_preset(preset), depth=1, cond_depth=1)
        runs[f"level{level}"] = str(root / f"level{level}")
        train(PriorTask.from_codes(base, str(root / "codes"), level, 8),
              TrainConfig(steps=PRIOR_STEPS, global_batch_size=8, learning_rate=3e-3,
                          warmup_steps=2, checkpoint_every=PRIOR_STEPS, media_every=1000),
              runs[f"level{level}"], progress=False)
    priors = [load_prior_run(runs[f"level{level}"]) for level in range(3)]
    export = export_models(vqvae, priors, str(root / "export_base"),
                           vocab=LabelVocab(tuple(manifest["artists"]),
                                            tuple(manifest["genres"])))
    good = _model_dir(root / "model_good", runs, export.path)
    # A VQ-VAE trained zero steps (its initial weights), with the trained priors.
    untrained = save_run(VQVAETask(_vqvae_config(), None, 1), str(root / "vqvae_untrained"))
    bad = _model_dir(root / "model_untrained", {**runs, "vqvae": untrained})
    examples = root / "examples"
    examples.mkdir()
    os.symlink(dataset, examples / "Split-eval")  # a dataset folder is a split folder
    os.symlink(dataset, examples / "Split-train")
    return {"root": root, "dataset": dataset, "good": good, "bad": bad,
            "examples": str(examples), "vqvae": vqvae, "codes": str(root / "codes"),
            "runs": runs}


def _artifact(kind, uri, id_=None, **int_props):
    artifact = kind()
    artifact.uri = str(uri)
    if id_ is not None:
        artifact.id = id_
    for key, value in int_props.items():
        artifact.set_int_custom_property(key, value)
    os.makedirs(artifact.uri, exist_ok=True)
    return artifact


def _examples(path):
    examples = _artifact(standard_artifacts.Examples, path)
    examples.split_names = artifact_utils.encode_split_names(["train", "eval"])
    return examples


# -- the library evaluations -------------------------------------------------------------

def _numpy_spectral_convergence(target, output):
    """The original's spectral convergence in numpy: centred frames (reflect padding), a
    periodic Hann window of 1536 zero-padded to a 2048-point FFT, hop 256."""
    n_fft, hop, window = 2048, 256, 1536
    hann = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(window) / window)

    def spec(x):
        x = np.pad(np.asarray(x, np.float64), window // 2, mode="reflect")
        frames = np.stack([x[i:i + window] * hann
                           for i in range(0, len(x) - window + 1, hop)])
        return np.abs(np.fft.rfft(frames, n_fft))

    s, s_hat = spec(target), spec(output)
    return np.linalg.norm(s - s_hat) / np.linalg.norm(s)


def test_vqvae_spectral_convergence_matches_a_numpy_reference(trained):
    from jukebox_tf.audio.dataset import load_manifest, make_dataset
    from jukebox_tf.vqvae.evaluate import evaluate_vqvae

    model, dataset = trained["vqvae"], trained["dataset"]
    got = evaluate_vqvae(model, dataset, max_chunks=1)
    assert got["chunks"] == 1
    length = -(-load_manifest(dataset)["chunk_frames"] // 128) * 128
    batch = next(iter(make_dataset(dataset, batch_size=1, sample_length=length,
                                   random_crop=False, shuffle=False, repeat=False,
                                   drop_remainder=False)))
    assert not batch["silent"][0]
    n = int(batch["num_samples"][0])
    codes = model.encode(batch["audio"])
    for level in range(3):
        recon = model.decode(codes[level], level).numpy()[0, :, 0]
        recon[n:] = 0.0
        reference = _numpy_spectral_convergence(batch["audio"][0, :, 0].numpy(), recon)
        assert got[f"spectral_convergence/l{level}"] == pytest.approx(reference, rel=1e-3)
        assert got[f"spectral_convergence_db/l{level}"] == pytest.approx(
            20 * np.log10(reference), abs=0.01)
    # The trained VQ-VAE reconstructs level 0 well below the signal's own energy.
    assert got["spectral_convergence_db/l0"] < -1.0


def test_prior_evaluation_tiles_every_track_and_weights_by_token(trained):
    from jukebox_tf.prior.evaluate import evaluate_prior, window_starts
    from jukebox_tf.codes.tracks import CodesData
    from jukebox_tf.prior.task import PriorTask, load_prior_run

    prior = load_prior_run(trained["runs"]["level1"])
    data = CodesData.load(trained["codes"], [1, 2])
    task = PriorTask(prior.config, None, 4, data=data)
    tracks, starts = window_starts(task)
    n_ctx, level = prior.config.n_ctx, data.levels[1]
    # Consecutive windows from token 0 cover each track exactly.
    for i, length in enumerate(level.lengths):
        assert list(starts[tracks == i]) == list(range(0, int(length), n_ctx))
    batch = task.window_batch(tf.constant(tracks), tf.constant(starts))
    for k, (track, start) in enumerate(zip(tracks, starts)):
        first = level.starts[track] + start
        real = min(n_ctx, level.lengths[track] - start)
        np.testing.assert_array_equal(batch["codes"][k, :real],
                                      level.codes[first:first + real])
        assert float(tf.reduce_sum(batch["mask"][k])) == level.valid[first:first + real].sum()
        upper = data.levels[2]
        ratio = prior.config.hop_ratio
        top_first = upper.starts[track] + start // ratio
        top_real = min(n_ctx // ratio, upper.lengths[track] - start // ratio)
        np.testing.assert_array_equal(batch["upper_codes"][k, :top_real],
                                      upper.codes[top_first:top_first + top_real])
    # The reference: -log2 p(code) of the model's logits over the real tokens only.
    logits = prior(batch, training=False)["logits"].numpy().astype(np.float64)
    top = logits.max(-1, keepdims=True)
    log_p = logits - top - np.log(np.exp(logits - top).sum(-1, keepdims=True))
    picked = np.take_along_axis(log_p, batch["codes"].numpy()[..., None], -1)[..., 0]
    mask = batch["mask"].numpy()
    bits_sum, count = float((-picked / np.log(2) * mask).sum()), float(mask.sum())
    for batch_size in (3, 8):
        got = evaluate_prior(prior, data, batch_size=batch_size)
        assert got["tokens"] == int(level.valid.sum()) == int(count)
        assert got["windows"] == len(tracks)
        assert got["bits_per_token"] == pytest.approx(bits_sum / count, rel=1e-4)


# -- the evaluator -----------------------------------------------------------------------

def _evaluate(trained, tmp_path, model_uri, baseline_uri=None, **params):
    from pipeline.components import evaluator

    model = _artifact(standard_artifacts.Model, model_uri, 11)
    inputs = {"examples": [_examples(trained["examples"])], "model": [model]}
    if baseline_uri:
        inputs["baseline_model"] = [_artifact(standard_artifacts.Model, baseline_uri, 7)]
    evaluation = _artifact(standard_artifacts.ModelEvaluation, tmp_path / "evaluation")
    blessing = _artifact(standard_artifacts.ModelBlessing, tmp_path / "blessing")
    props = {"max_spectral_convergence_db": json.dumps([-1.0, None, None]),
             "max_bits_per_token": "[]", "sc_tolerance_db": 0.5, "bits_tolerance": 0.05,
             "max_eval_chunks": EVAL_CHUNKS, "max_eval_windows": 4, **params}
    evaluator.Executor().Do(inputs, {"evaluation": [evaluation], "blessing": [blessing]}, props)
    with open(os.path.join(evaluation.uri, "metrics.json")) as f:
        return json.load(f), blessing


def test_trained_model_is_blessed_and_reports_the_library_numbers(trained, tmp_path):
    from jukebox_tf.vqvae.evaluate import evaluate_vqvae

    metrics, blessing = _evaluate(trained, tmp_path, trained["good"],
                                  baseline_uri=trained["good"])
    assert metrics["blessed"] is True, metrics["checks"]
    assert sorted(os.listdir(blessing.uri)) == ["BLESSED"]
    assert blessing.get_int_custom_property("blessed") == 1
    assert blessing.get_string_custom_property("current_model") == trained["good"]
    assert blessing.get_int_custom_property("current_model_id") == 11
    assert blessing.get_string_custom_property("baseline_model") == trained["good"]
    assert blessing.get_int_custom_property("baseline_model_id") == 7
    library = evaluate_vqvae(trained["vqvae"], trained["dataset"], max_chunks=EVAL_CHUNKS)
    for level in range(3):
        key = f"spectral_convergence_db/l{level}"
        assert metrics["current"][key] == pytest.approx(library[key], abs=1e-4)
        assert f"bits_per_token/l{level}" in metrics["current"]
    names = {c["name"] for c in metrics["checks"]}
    assert {"threshold spectral_convergence_db/l0", "baseline spectral_convergence_db/l0",
            "threshold bits_per_token/l2", "baseline bits_per_token/l0"} <= names
    # Every prior beats a uniform guess over the 64 codes.
    assert all(metrics["current"][f"bits_per_token/l{lv}"] < 6.0 for lv in range(3))


def test_untrained_vqvae_is_not_blessed_with_the_reasons(trained, tmp_path):
    metrics, blessing = _evaluate(trained, tmp_path, trained["bad"],
                                  baseline_uri=trained["good"])
    assert metrics["blessed"] is False
    assert sorted(os.listdir(blessing.uri)) == ["NOT_BLESSED"]
    assert blessing.get_int_custom_property("blessed") == 0
    assert blessing.get_string_custom_property("baseline_model") == trained["good"]
    failed = {c["name"]: c["reason"] for c in metrics["checks"] if not c["passed"]}
    assert "is above the maximum -1.00 dB" in failed["threshold spectral_convergence_db/l0"]
    assert "worse than the baseline's" in failed["baseline spectral_convergence_db/l0"]
    assert metrics["baseline"]["spectral_convergence_db/l0"] < -1.0


def test_run_checks_limits_and_tolerances():
    from pipeline.components.evaluator import run_checks

    current = {"levels": 2, "l_bins": 16, "spectral_convergence_db/l0": -5.0,
               "spectral_convergence_db/l1": 0.5, "bits_per_token/l1": 3.9}
    baseline = {"spectral_convergence_db/l0": -5.4, "spectral_convergence_db/l1": 0.0,
                "bits_per_token/l1": 3.8}
    checks = {c["name"]: c for c in run_checks(current, baseline, [None, 1.0], [], 0.5, 0.05)}
    assert checks["threshold spectral_convergence_db/l0"]["limit"] == -1.0  # the default
    assert checks["threshold spectral_convergence_db/l1"]["passed"]  # 0.5 <= 1.0 given
    assert checks["baseline spectral_convergence_db/l0"]["passed"]  # 0.4 dB worse: tolerated
    assert checks["threshold bits_per_token/l1"]["limit"] == 4.0  # log2(16)
    assert checks["threshold bits_per_token/l1"]["passed"]
    assert not checks["baseline bits_per_token/l1"]["passed"]  # 0.1 worse than 0.05 allows
    assert "bits_per_token/l0" not in {c["metric"] for c in checks.values()}  # no such prior
    assert run_checks(current, None, [], [None, 3.5], 0.5, 0.05)[-1]["reason"] == (
        "bits_per_token/l1 = 3.900 is above the maximum 3.500")


# -- infra validation --------------------------------------------------------------------

def _infra_validate(model_uri, tmp_path):
    from pipeline.components import infra_validator

    blessing = _artifact(standard_artifacts.InfraBlessing, tmp_path / "infra_blessing")
    infra_validator.Executor().Do(
        {"model": [_artifact(standard_artifacts.Model, model_uri)]}, {"blessing": [blessing]},
        {"model_name": "jukebox", "load_timeout_seconds": 60.0,
         "request_timeout_seconds": 120.0})
    with open(os.path.join(blessing.uri, "infra_validation.json")) as f:
        return json.load(f), blessing


def test_infra_validation_blesses_a_servable_export(trained, tmp_path):
    report, blessing = _infra_validate(trained["good"], tmp_path)
    assert report["blessed"], report["reason"]
    assert "INFRA_BLESSED" in os.listdir(blessing.uri)
    assert "INFRA_NOT_BLESSED" not in os.listdir(blessing.uri)
    assert blessing.get_int_custom_property("blessed") == 1
    assert sorted(r["signature"] for r in report["requests"]) == sorted(
        ["encode", "decode", "sample", "upsample", "upsample_part", "generate", "metadata"])
    assert all(r["outputs"] and not r["error"] for r in report["requests"])


@pytest.mark.parametrize("damage,reason", [
    ("saved_model.pb", "failed to load"),  # corrupted graph: the load fails
    ("variables", "did not take"),  # no weights: not a complete version to the server
])
def test_infra_validation_does_not_bless_a_broken_export(trained, tmp_path, damage, reason):
    broken = tmp_path / "model_broken"
    shutil.copytree(os.path.join(trained["good"], "Format-Serving"), broken / "Format-Serving")
    if damage == "variables":
        shutil.rmtree(broken / "Format-Serving" / "variables")
    else:
        (broken / "Format-Serving" / damage).write_bytes(b"not a SavedModel")
    report, blessing = _infra_validate(broken, tmp_path)
    assert not report["blessed"]
    assert reason in report["reason"]
    assert "INFRA_NOT_BLESSED" in os.listdir(blessing.uri)
    assert "INFRA_BLESSED" not in os.listdir(blessing.uri)
    assert blessing.get_int_custom_property("blessed") == 0


# -- push --------------------------------------------------------------------------------

def _push(model_uri, base, tmp_path, name, blessed=1, infra_blessed=1):
    from tfx.proto import pusher_pb2
    from tfx.utils import proto_utils

    from pipeline.components import pusher

    pushed = _artifact(standard_artifacts.PushedModel, tmp_path / name)
    destination = pusher_pb2.PushDestination(
        filesystem=pusher_pb2.PushDestination.Filesystem(base_directory=str(base)))
    pusher.Executor().Do(
        {"model": [_artifact(standard_artifacts.Model, model_uri)],
         "model_blessing": [_artifact(standard_artifacts.ModelBlessing, tmp_path / "mb",
                                      blessed=blessed)],
         "infra_blessing": [_artifact(standard_artifacts.InfraBlessing, tmp_path / "ib",
                                      blessed=infra_blessed)]},
        {"pushed_model": [pushed]},
        {"push_destination": proto_utils.proto_to_json(destination), "custom_config": "null"})
    return pushed


def test_pusher_pushes_new_integer_versions_atomically(trained, tmp_path):
    from serving.model_manager import scan_versions

    base = tmp_path / "serving" / "jukebox"
    first = _push(trained["good"], base, tmp_path, "pushed1")
    assert sorted(os.listdir(base)) == ["1"]
    again = _push(trained["good"], base, tmp_path, "pushed_again")
    assert sorted(os.listdir(base)) == ["1"], "the model served already is not pushed again"
    assert again.get_int_custom_property("already_pushed") == 1
    other = tmp_path / "other"  # another model: the same files but one
    shutil.copytree(os.path.join(trained["good"], "Format-Serving"), other / "Format-Serving")
    with open(other / "Format-Serving" / "assets.extra" / "serving_limits.json", "a") as f:
        f.write("\n")
    second = _push(str(other), base, tmp_path, "pushed2")
    assert sorted(os.listdir(base)) == ["1", "2"]  # no temporary folder left behind
    assert sorted(scan_versions(str(base))) == [1, 2]
    for pushed, version, model in ((first, "1", trained["good"]), (again, "1", trained["good"]),
                                   (second, "2", str(other))):
        source = os.path.join(model, "Format-Serving")
        assert pushed.get_int_custom_property("pushed") == 1
        assert pushed.get_string_custom_property("pushed_version") == version
        assert pushed.get_string_custom_property("pushed_destination") == str(base / version)
        for rel in ("saved_model.pb", "assets.extra/tf_serving_warmup_requests"):
            with open(os.path.join(source, rel), "rb") as a, open(base / version / rel,
                                                                  "rb") as b:
                assert a.read() == b.read()
        assert os.path.isfile(os.path.join(pushed.uri, "saved_model.pb"))  # archived copy


@pytest.mark.parametrize("blessed,infra_blessed", [(0, 1), (1, 0)])
def test_pusher_does_not_push_an_unblessed_model(trained, tmp_path, blessed, infra_blessed):
    base = tmp_path / "serving" / "jukebox"
    pushed = _push(trained["good"], base, tmp_path, "pushed", blessed, infra_blessed)
    assert not base.exists()
    assert pushed.get_int_custom_property("pushed") == 0
    assert os.listdir(pushed.uri) == []


def test_components_wire_their_channels():
    from tfx.types import channel_utils

    from pipeline.components.evaluator import JukeboxEvaluator
    from pipeline.components.infra_validator import LocalInfraValidator
    from pipeline.components.pusher import Executor, make_pusher

    def channel(kind):
        return channel_utils.as_channel([kind()])

    model = channel(standard_artifacts.Model)
    evaluator = JukeboxEvaluator(examples=channel(standard_artifacts.Examples), model=model,
                                 max_spectral_convergence_db=[-2.0], max_eval_chunks=8)
    assert set(evaluator.outputs) == {"evaluation", "blessing"}
    assert json.loads(evaluator.exec_properties["max_spectral_convergence_db"]) == [-2.0]
    infra = LocalInfraValidator(model=model)
    assert infra.outputs["blessing"].type == standard_artifacts.InfraBlessing
    pusher = make_pusher(model, evaluator.outputs["blessing"], infra.outputs["blessing"],
                         "/srv/models/jukebox")
    assert pusher.executor_spec.executor_class is Executor
    assert "/srv/models/jukebox" in pusher.exec_properties["push_destination"].__str__()
