"""The pipeline with imported runs: `--vqvae-from`, `--upsamplers-from` and `--top-prior-from`
enter through Importer nodes; no VQ-VAE or upsampler Trainer runs; the top prior is fine-tuned
on music of an artist it never heard; ML Metadata traces the pushed model back to the imported
runs and the new Examples; the Evaluator blesses the fine-tuned prior only when it beats its
starting prior on the eval split; the pushed model serves the new artist's name.

The "released" runs are trained here in a few steps (tests/test_pipeline_eval_push.py's recipe,
which the Evaluator blesses) on three demo artists, the top prior on two of them; the pipeline
gets the third artist's tracks.
"""

import dataclasses
import json
import os
import shutil

import pytest

from jukebox_tf.errors import JukeboxError
from pipeline import local_runner
from pipeline.configs import get_config
from pipeline.metadata import custom_property, last_run, open_store, upstream

pytestmark = pytest.mark.slow

RATE = 8000
# Enough that every level clears the Evaluator's thresholds on the new music with a margin
# (level-0 spectral convergence about -2 dB against -1; upsamplers' bits well under 6).
VQ_STEPS = 80
STEPS = {2: 25, 1: 80, 0: 80}
IMPORTERS = ("VQVAEImporter", "UpsamplerImporterL1", "UpsamplerImporterL0", "TopPriorImporter")


@pytest.fixture(scope="module")
def started(tmp_path_factory):
    """{"runs": {vqvae, level2, level1, level0}, "audio": the new artist's folder,
    "seen_audio": the starting model's music, "new": the new artist's name}."""
    from jukebox_tf.audio.dataset import load_manifest
    from jukebox_tf.audio.demo_data import make_demo_data
    from jukebox_tf.audio.ingest import IngestConfig, ingest
    from jukebox_tf.prior import get_preset as prior_preset
    from jukebox_tf.prior.task import PriorTask
    from jukebox_tf.training import TrainConfig, train
    from jukebox_tf.vqvae import get_preset
    from jukebox_tf.codes.encode import encode_dataset
    from jukebox_tf.vqvae.task import VQVAETask, compute_data_statistics, load_vqvae_run

    root = tmp_path_factory.mktemp("finetune_pipeline")
    make_demo_data(root / "all", seed=0, num_artists=3, tracks_per_artist=3, track_seconds=3.0,
                   sample_rate=RATE)
    *seen, new = sorted(p.name for p in (root / "all").iterdir() if p.is_dir())
    for name, drop in (("seen", [new]), ("new", seen)):
        shutil.copytree(root / "all", root / name)
        for folder in drop:  # the metadata's rows of absent files are reported and skipped
            shutil.rmtree(root / name / folder)
    # The VQ-VAE and the top prior have heard only the first two artists, the upsamplers all
    # three.
    for name in ("all", "seen"):
        ingest(str(root / name), str(root / f"{name}_data"), IngestConfig(
            sample_rate=RATE, chunk_seconds=1.5, workers=1), progress=False)
    dataset = str(root / "seen_data")
    vq_config = get_preset("tiny", sample_rate=RATE, sample_length=2048, depth=1)
    runs = {"vqvae": str(root / "vqvae")}
    train(VQVAETask(vq_config, dataset, 4, compute_data_statistics(dataset, vq_config, 20)),
          TrainConfig(steps=VQ_STEPS, global_batch_size=4, learning_rate=2e-3, warmup_steps=2,
                      checkpoint_every=VQ_STEPS, media_every=1000), runs["vqvae"],
          progress=False)
    vqvae = load_vqvae_run(runs["vqvae"])
    for name in ("all", "seen"):
        encode_dataset(vqvae, str(root / f"{name}_data"), str(root / f"{name}_codes"),
                       progress=False)
    for level, preset in ((2, "tiny"), (1, "tiny_upsampler"), (0, "tiny_upsampler")):
        base = dataclasses.replace(prior_preset(preset), depth=1, cond_depth=1)
        runs[f"level{level}"] = str(root / f"level{level}")
        codes = str(root / ("seen_codes" if level == 2 else "all_codes"))
        train(PriorTask.from_codes(base, codes, level, 8),
              TrainConfig(steps=STEPS[level], global_batch_size=8, learning_rate=3e-3,
                          warmup_steps=2, checkpoint_every=STEPS[level], media_every=1000),
              runs[f"level{level}"], progress=False)
    artists = {name: set(load_manifest(str(root / f"{name}_data"))["artists"])
               for name in ("all", "seen")}
    [new_artist] = artists["all"] - artists["seen"]
    return {"root": root, "runs": runs, "audio": str(root / "new"),
            "seen_audio": str(root / "seen"), "new": new_artist}


def config(runs, **overrides):
    settings = dict(sample_rate=RATE, chunk_seconds=1.5, prior_steps=60,
                    vqvae_from=runs["vqvae"], upsamplers_from=(runs["level1"], runs["level0"]),
                    top_prior_from=runs["level2"])
    return get_config("tiny", **{**settings, **overrides})


@pytest.fixture(scope="module")
def pipeline_runs(started, tmp_path_factory):
    """Two runs: fine-tuned 60 steps on the new artist's music; then 0 steps on the starting
    model's own music, whose names it knows, so the "fine-tuned" prior is the starting prior
    itself, which must not be blessed."""
    out = tmp_path_factory.mktemp("finetune_root")
    root, serving = str(out / "pipeline"), str(out / "serving" / "jukebox")
    results = {"root": root, "serving": serving}
    for name, audio, steps in (("tuned", started["audio"], 60),
                               ("untuned", started["seen_audio"], 0)):
        local_runner.run(audio, root, config(started["runs"], prior_steps=steps),
                         serving_model_dir=serving)
        with open_store(root) as store:
            results[name] = last_run(store)
        results[f"{name}_versions"] = sorted(os.listdir(serving))
    return results


def evaluation(node) -> dict:
    with open(os.path.join(node.output("evaluation").uri, "metrics.json")) as f:
        return json.load(f)


def test_imported_runs_replace_their_trainers_and_the_lineage_shows_them(pipeline_runs):
    tuned = pipeline_runs["tuned"]
    assert not {"VQVAETrainer", "UpsamplerTrainerL1", "UpsamplerTrainerL0"} & set(tuned)
    assert tuned["TopPriorTrainer"].state == "COMPLETE"
    pushed = tuned["Pusher"].output("pushed_model")
    with open_store(pipeline_runs["root"]) as store:
        ancestors = {a.id: a for a in upstream(store, pushed.id)}
    for name in IMPORTERS:
        assert tuned[name].output("result").id in ancestors, name
    for name, key in (("TopPriorTrainer", "model"), ("CodeGen", "codes"),
                      ("AudioExampleGen", "examples"), ("ModelExport", "model")):
        assert tuned[name].output(key).id in ancestors, name


def test_fine_tuned_prior_is_blessed_for_beating_its_start_and_pushed(pipeline_runs, started):
    tuned = pipeline_runs["tuned"]
    result = evaluation(tuned["JukeboxEvaluator"])
    current = result["current"]
    assert current["bits_per_token/l2"] < current["starting_prior/bits_per_token/l2"]
    [check] = [c for c in result["checks"] if c["name"] == "starting prior bits_per_token/l2"]
    assert check["passed"] and result["blessed"], result["checks"]
    assert result["start_prior"] == started["runs"]["level2"]
    assert custom_property(tuned["LocalInfraValidator"].output("blessing"), "blessed") == 1
    assert pipeline_runs["tuned_versions"] == ["1"]
    # The served model names the new artist, after the starting model's names.
    with open(os.path.join(pipeline_runs["serving"], "1", "assets", "artists.txt")) as f:
        artists = f.read().splitlines()
    assert artists[-1] == started["new"] and len(artists) == 4  # unknown, two seen, the new


def test_the_starting_prior_itself_is_not_blessed(pipeline_runs):
    untuned = pipeline_runs["untuned"]
    result = evaluation(untuned["JukeboxEvaluator"])
    [check] = [c for c in result["checks"] if c["name"] == "starting prior bits_per_token/l2"]
    assert not check["passed"] and check["value"] == check["limit"], check
    assert "does not beat the starting prior's" in check["reason"] and not result["blessed"]
    assert custom_property(untuned["Pusher"].output("pushed_model"), "pushed", 0) == 0
    assert pipeline_runs["untuned_versions"] == ["1"]


@pytest.mark.parametrize("case", ["vqvae_is_a_prior", "upsampler_level", "top_level",
                                  "codebook", "sample_rate"])
def test_wrong_imported_runs_are_refused_before_anything_runs(started, tmp_path, case):
    from pipeline.pipeline import create_pipeline

    runs = dict(started["runs"])
    overrides, expected = {}, {
        "vqvae_is_a_prior": "--vqvae-from .*not a VQ-VAE run",
        "upsampler_level": "--upsamplers-from .*a run of level 2",
        "top_level": "--top-prior-from .*a prior of level 1, not the top level 2",
        "codebook": "codebook size of 64 codes, the VQ-VAE's codebook has 32",
        "sample_rate": "the VQ-VAE works at 8000 Hz, the pipeline ingests at 22050 Hz"}[case]
    if case == "vqvae_is_a_prior":
        runs["vqvae"] = runs["level2"]
    elif case == "upsampler_level":
        runs["level1"] = runs["level2"]
    elif case == "top_level":
        runs["level2"] = runs["level1"]
    elif case == "codebook":
        runs["vqvae"] = str(tmp_path / "vqvae")
        shutil.copytree(started["runs"]["vqvae"], runs["vqvae"])
        with open(os.path.join(runs["vqvae"], "task.json")) as f:
            saved = json.load(f)
        saved["vqvae"]["l_bins"] = 32
        with open(os.path.join(runs["vqvae"], "task.json"), "w") as f:
            json.dump(saved, f)
    else:
        overrides["sample_rate"] = 22050
    with pytest.raises(JukeboxError, match=expected):
        create_pipeline(str(tmp_path / "root"), started["audio"],
                        dataclasses.replace(config(runs), **overrides),
                        str(tmp_path / "serving"))
    assert not (tmp_path / "root").exists()
