"""The VQ-VAE trained by the shared loop: on demo data, from the CLI, and on two workers."""

import glob
import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf
import tensorflow as tf

from jukebox_tf.audio.demo_data import make_demo_data
from jukebox_tf.audio.ingest import IngestConfig, ingest

HELPERS = os.path.join(os.path.dirname(__file__), "training_helpers")


@pytest.fixture(scope="module")
def demo_dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("demo")
    make_demo_data(str(root / "audio"), seed=1, num_artists=2, tracks_per_artist=2,
                   track_seconds=6.0)
    ingest(str(root / "audio"), str(root / "data"), IngestConfig(
        sample_rate=22050, chunk_seconds=3.0, workers=1), progress=False)
    return root


def scalars(run_dir, tag):
    values = {}
    for path in glob.glob(os.path.join(run_dir, "tensorboard", "**", "events.*"), recursive=True):
        for event in tf.compat.v1.train.summary_iterator(path):
            for value in event.summary.value:
                if value.tag == tag:
                    values[event.step] = float(tf.make_ndarray(value.tensor))
    return [values[k] for k in sorted(values)]


def summary_tags(run_dir):
    tags = set()
    for path in glob.glob(os.path.join(run_dir, "tensorboard", "**", "events.*"), recursive=True):
        for event in tf.compat.v1.train.summary_iterator(path):
            tags.update(v.tag for v in event.summary.value)
    return tags


@pytest.mark.slow
@pytest.mark.parametrize("mixed_precision", [None, "bfloat16"])
def test_tiny_vqvae_loss_falls_on_demo_data(demo_dataset, tmp_path, mixed_precision):
    from jukebox_tf.training import TrainConfig, train
    from jukebox_tf.vqvae import get_preset
    from jukebox_tf.vqvae.task import VQVAETask

    task = VQVAETask(get_preset("tiny"), str(demo_dataset / "data"), global_batch_size=4)
    run = str(tmp_path / "run")
    metrics = train(task, TrainConfig(steps=60, global_batch_size=4, learning_rate=1e-3,
                                      warmup_steps=5, log_every=1, media_every=30,
                                      checkpoint_every=60, mixed_precision=mixed_precision),
                    run, progress=False)
    losses = scalars(run, "loss")
    assert len(losses) == 60
    assert np.mean(losses[-10:]) < 0.75 * np.mean(losses[:5]), losses
    assert metrics["step"] == 60 and metrics["skipped_steps"] == 0
    assert metrics["usage/l0"] > 8  # restarts keep the codebook in use
    tags = summary_tags(run)
    for tag in ("audio/input", "audio/reconstruction_l0", "audio/reconstruction_l2", "codes/l1",
                "spectrogram/reconstructions", "spectral_convergence_db/l0", "learning_rate"):
        assert tag in tags
    saved = json.load(open(os.path.join(run, "task.json")))
    assert set(saved["data_stats"]) == {"l2", "l1", "spec"} and saved["data_stats"]["l2"] > 0


@pytest.mark.slow
def test_cli_trains_as_two_local_workers(demo_dataset, tmp_path, cli):
    """The command creates its strategy before it reads the data: TF_CONFIG's collectives
    must be configured before TensorFlow starts, or the workers fail at once."""
    run = tmp_path / "run"
    out = cli("train-vqvae", "--data", demo_dataset / "data", "--preset", "tiny", "--steps",
              "2", "--out", run, "--local-workers", "2", "--quiet", check=True)
    assert "starting 2 local workers" in out.stdout
    assert "trained the VQ-VAE: step 2" in out.stdout
    assert "trained the VQ-VAE: step 2" in (run / "workers" / "worker-1.log").read_text()
    assert sorted(os.listdir(run / "checkpoints")) == [
        "checkpoint", "ckpt-2.data-00000-of-00001", "ckpt-2.index"]


@pytest.mark.slow
def test_cli_train_resume_reconstruct_encode(demo_dataset, tmp_path, cli):
    data, run = demo_dataset / "data", tmp_path / "run"
    first = cli("train-vqvae", "--data", data, "--preset", "tiny", "--steps", "2", "--out", run,
                "--checkpoint-every", "1", "--quiet", check=True)
    assert "trained the VQ-VAE: step 2" in first.stdout
    again = cli("train-vqvae", "--data", data, "--preset", "tiny", "--steps", "4", "--out", run,
                "--quiet")
    assert again.returncode == 2 and "--resume" in again.stderr
    resumed = cli("train-vqvae", "--data", data, "--preset", "tiny", "--steps", "4", "--out",
                  run, "--resume", "--quiet", check=True)
    assert "trained the VQ-VAE: step 4" in resumed.stdout
    assert sorted(os.listdir(run / "checkpoints"))  # checkpoints kept

    track = sorted(glob.glob(str(demo_dataset / "audio" / "*" / "*.wav")))[0]
    out = cli("reconstruct", "--run", run, track, "--level", "1", "-o", tmp_path / "rec.wav",
              check=True)
    assert "level 1: spectral convergence" in out.stdout and " dB " in out.stdout
    recon, rate = sf.read(str(tmp_path / "rec.wav"))
    assert rate == 22050 and abs(len(recon) - 6.0 * 22050) <= 1
    assert open(tmp_path / "rec.png", "rb").read(4) == b"\x89PNG"
    bad = cli("reconstruct", "--run", run, tmp_path / "rec.png", "-o", tmp_path / "x.wav")
    assert bad.returncode == 2 and "not an audio file" in bad.stderr

    cli("encode", "--run", run, "--data", data, "--out", tmp_path / "codes", "--quiet",
        check=True)
    from jukebox_tf.audio.dataset import load_manifest
    from jukebox_tf.codes.format import load_codes_manifest, read_codes

    manifest, codes_manifest = load_manifest(str(data)), load_codes_manifest(
        str(tmp_path / "codes"))
    assert codes_manifest["hop_lengths"] == [8, 32, 128]
    assert codes_manifest["chunks"] == manifest["counts"]["chunks"]
    assert codes_manifest["artists"] == manifest["artists"]
    items = read_codes(str(tmp_path / "codes"))
    for item in items:
        for level, hop in enumerate((8, 32, 128)):
            codes = item[f"codes_l{level}"]
            assert len(codes) == -(-item["num_samples"] // hop)
            assert codes.min() >= 0 and codes.max() < 64
    # A trained codebook is in use (an unrestored, all-zero one maps everything to code 0).
    assert len(np.unique(np.concatenate([item["codes_l0"] for item in items]))) > 4
    artists = {item["track_id"].decode().split("/")[0]: item["artist_id"] for item in items}
    assert len(set(artists.values())) == 2 and 0 not in artists.values()

    # bfloat16 inference: the same codes but where bfloat16's rounding tips a near tie, and
    # a reconstruction as close to the input.
    cli("encode", "--run", run, "--data", data, "--out", tmp_path / "codes_bf16", "--quiet",
        "--precision", "bfloat16", check=True)
    for full, half in zip(items, read_codes(str(tmp_path / "codes_bf16"))):
        assert full["track_id"] == half["track_id"]
        for level in range(3):
            a, b = full[f"codes_l{level}"], half[f"codes_l{level}"]
            assert a.shape == b.shape and np.mean(a == b) > 0.9, (level, np.mean(a == b))
    out_bf16 = cli("reconstruct", "--run", run, track, "--level", "1", "-o",
                   tmp_path / "rec_bf16.wav", "--precision", "bfloat16", check=True)
    db = [float(re.search(r"spectral convergence (\S+) dB", o.stdout).group(1))
          for o in (out, out_bf16)]
    assert abs(db[0] - db[1]) < 0.5, db
    bad = cli("encode", "--run", run, "--data", data, "--out", tmp_path / "x", "--precision",
              "float16")
    assert bad.returncode == 2 and "--precision" in bad.stderr


@pytest.mark.slow
def test_two_workers_match_one_process(tmp_path):
    import portpicker

    ports = f"{portpicker.pick_unused_port()},{portpicker.pick_unused_port()}"
    env = dict(os.environ, PYTHONPATH=HELPERS + os.pathsep + os.environ.get("PYTHONPATH", ""))

    def start(index):
        return subprocess.Popen(
            [sys.executable, os.path.join(HELPERS, "vqvae_worker.py"), str(index), ports,
             str(tmp_path / f"run{index}"), str(tmp_path / f"w{index}.npz"), "3"],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)

    workers = [start(0), start(1)]
    try:
        outputs = [w.communicate(timeout=420)[0] for w in workers]
    finally:
        for w in workers:
            w.kill()
    assert all(w.returncode == 0 for w in workers), "\n".join(o[-3000:] for o in outputs)
    single = start(-1)
    output = single.communicate(timeout=420)[0]
    assert single.returncode == 0, output[-3000:]

    w0, w1, one = (np.load(tmp_path / f"{name}.npz") for name in ("w0", "w1", "w-1"))
    assert set(w0.files) == set(one.files) and any("codebook" in k for k in one.files)
    for key in one.files:
        np.testing.assert_array_equal(w0[key], w1[key], err_msg=key)
        # Summing two half-batch gradients differs from one whole-batch gradient in float
        # rounding; Adam's first steps are sign-like, so that noise can move a weight whose
        # gradient is near zero by a fraction of the learning rate (1e-3). A wrong reduction
        # or a diverged codebook would differ by the learning rate or more.
        np.testing.assert_allclose(w0[key], one[key], rtol=1e-3, atol=1e-4, err_msg=key)
