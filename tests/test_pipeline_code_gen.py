"""CodeGen (a Beam component) writes the same codes as `jukebox-tf encode`, per split."""

import gzip
import json
import os
import shutil

import pytest

from jukebox_tf.audio.demo_data import make_demo_data
from jukebox_tf.audio.ingest import IngestConfig, ingest
from jukebox_tf.training import TrainConfig, train
from jukebox_tf.vqvae import get_preset
from jukebox_tf.codes.encode import encode_dataset
from jukebox_tf.codes.format import load_codes_manifest, read_codes
from jukebox_tf.vqvae.task import VQVAETask, load_vqvae_run
from pipeline.components import code_gen
from pipeline.components.trainer_fns import split_dir
from pipeline.configs import get_config

pytestmark = pytest.mark.slow


def as_example_gen_split(dataset_dir: str, split_dir_: str) -> None:
    """An ingest folder laid out as AudioExampleGen writes a split: gzipped data files."""
    os.makedirs(split_dir_)
    with open(os.path.join(dataset_dir, "dataset.json")) as f:
        manifest = json.load(f)
    for shard in manifest["shards"]:
        name = shard["file"].replace(".tfrecord", ".gz")
        with open(os.path.join(dataset_dir, shard["file"]), "rb") as src, \
                gzip.open(os.path.join(split_dir_, name), "wb") as dst:
            shutil.copyfileobj(src, dst)
        shard["file"] = name
    manifest["compression"] = "GZIP"
    with open(os.path.join(split_dir_, "dataset.json"), "w") as f:
        json.dump(manifest, f)


def test_code_gen_equals_encode(tmp_path):
    from tfx.types import standard_artifacts

    make_demo_data(str(tmp_path / "audio"), seed=2, num_artists=2, tracks_per_artist=1,
                   track_seconds=4.0)
    data = str(tmp_path / "data")
    ingest(str(tmp_path / "audio"), data, IngestConfig(sample_rate=22050, chunk_seconds=1.5,
                                                       workers=1), progress=False)
    run_dir = str(tmp_path / "model" / "Format-Serving")
    train(VQVAETask(get_preset("tiny", sample_rate=22050), data, 2),
          TrainConfig(steps=2, global_batch_size=2, warmup_steps=0), run_dir, progress=False)
    reference = encode_dataset(load_vqvae_run(run_dir), data, str(tmp_path / "ref"),
                               batch_size=3, progress=False, source_run=run_dir)

    examples = standard_artifacts.Examples()
    examples.uri = str(tmp_path / "examples")
    examples.split_names = '["train", "eval"]'
    for split in ("train", "eval"):
        as_example_gen_split(data, os.path.join(examples.uri, f"Split-{split}"))
    model = standard_artifacts.Model()
    model.uri = str(tmp_path / "model")
    codes = standard_artifacts.Examples()
    codes.uri = str(tmp_path / "codes")
    code_gen.Executor().Do({"examples": [examples], "model": [model]}, {"codes": [codes]},
                           {"batch_size": 3})

    want = sorted((r["track_id"], r["offset"], r["codes_l0"].tobytes(), r["codes_l2"].tobytes())
                  for r in read_codes(str(tmp_path / "ref")))
    for split in ("train", "eval"):
        out = os.path.join(codes.uri, f"Split-{split}")
        manifest = load_codes_manifest(out)
        assert manifest["chunks"] == reference["chunks"] > 2
        assert manifest["tokens"] == reference["tokens"]
        assert manifest["hop_lengths"] == reference["hop_lengths"]
        assert manifest["artists"] == reference["artists"]
        got = sorted((r["track_id"], r["offset"], r["codes_l0"].tobytes(),
                      r["codes_l2"].tobytes()) for r in read_codes(out))
        assert got == want
        assert codes.get_int_custom_property(f"{split}_chunks") == reference["chunks"]
    assert json.loads(codes.split_names) == ["train", "eval"]


def test_split_dir_and_config_checks():
    assert split_dir(["/a/Split-train/*"]) == "/a/Split-train"
    assert split_dir("/a/Split-eval") == "/a/Split-eval"
    config = get_config("tiny", vqvae_steps=7)
    assert config.vqvae_custom_config()["train"]["checkpoint_every"] == 7
    assert config.prior_custom_config(1)["preset"] == "tiny_upsampler"
    assert config.prior_custom_config(2)["preset"] == "tiny"
    with pytest.raises(ValueError, match="vqvae_steps must be >= 0"):
        get_config("tiny", vqvae_steps=-1)
    with pytest.raises(ValueError, match="unknown pipeline preset 'huge'"):
        get_config("huge")
