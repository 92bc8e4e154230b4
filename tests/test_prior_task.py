"""Prior training data and the train-prior command: windows cut from the codes dataset (codes,
labels, lyrics and the level above all aligned), sampling and seeds, and end-to-end training."""

import argparse
import contextlib
import glob
import io
import json
import os
import re

import numpy as np
import pytest
import tensorflow as tf

from jukebox_tf.audio import records
from jukebox_tf.codes.format import CODES_SCHEMA_VERSION, MANIFEST, SHARD_PATTERN
from jukebox_tf.codes.tracks import CodesData, _track_tokens
from jukebox_tf.prior import lyrics
from jukebox_tf.prior.config import get_preset
from jukebox_tf.prior.labels import ARTIST, GENRES, LENGTH, OFFSET, TOTAL_LENGTH
from jukebox_tf.prior.task import PriorTask, load_prior_run, prior_run_info

HOPS = (8, 32, 128)
L_BINS = 64
RATE = 1000
CHUNK = 16 * 128  # samples per chunk: whole tokens at every level
TRACKS = [  # (top-level tokens, artist id, genre ids, lyrics); tiny n_ctx is 64
    (150, 1, [1, 2], "la la la, sing along\nthe quick brown fox " * 3),
    (70, 2, [2], "short words"),
    (20, 1, [1], ""),  # shorter than one window: padded and masked
]


def code(track, level, token):
    """The synthetic code at a token: any window can be checked against it."""
    return (track * 17 + level * 5 + token) % L_BINS


def write_codes(out_dir, tracks=TRACKS, artists=("unknown", "ann", "bob"),
                genres=("unknown", "rock", "pop"), chunk=CHUNK, skip_chunks=()):
    """A codes dataset as `jukebox-tf encode` writes it (codes/format.py), with known codes."""
    os.makedirs(out_dir, exist_ok=True)
    examples, tokens = [], [0, 0, 0]
    for k, (top_tokens, artist, genre_ids, text) in enumerate(tracks):
        length = top_tokens * HOPS[-1]
        for index, offset in enumerate(range(0, length, chunk)):
            if (k, index) in skip_chunks:
                continue
            n = min(chunk, length - offset)
            feats = {"track_id": f"track{k}", "offset": offset, "num_samples": n,
                     "track_length": length, "artist": artists[artist], "artist_id": artist,
                     "genre_ids": np.asarray(genre_ids, np.int64), "lyrics": text,
                     "schema_version": CODES_SCHEMA_VERSION}
            for level, hop in enumerate(HOPS):
                ids = [code(k, level, offset // hop + i) for i in range(-(-n // hop))]
                feats[f"codes_l{level}"] = np.asarray(ids, "<i2").tobytes()
                tokens[level] += len(ids)
            examples.append(records.encode_example(feats))
    name = SHARD_PATTERN.format(index=0, count=1)
    records.write_records(os.path.join(out_dir, name), examples)
    manifest = {"schema_version": CODES_SCHEMA_VERSION, "sample_rate": RATE, "levels": 3,
                "hop_lengths": list(HOPS), "l_bins": L_BINS, "chunks": len(examples),
                "tokens": tokens, "artists": list(artists), "genres": list(genres),
                "vqvae_run": None, "shards": [{"file": name, "chunks": len(examples)}]}
    with open(os.path.join(out_dir, MANIFEST), "w") as f:
        json.dump(manifest, f)
    return out_dir


@pytest.fixture(scope="module")
def codes_dir(tmp_path_factory):
    return write_codes(str(tmp_path_factory.mktemp("codes") / "codes"))


def numpy_batch(task, seed=(0, 0), batch_size=32):
    batch = task.sample_batch(tf.constant(seed, tf.int64), batch_size)
    return {k: v.numpy() for k, v in batch.items()}


def track_of(labels):
    """Track index from the total length in the labels (unique per track here)."""
    return [t[0] * HOPS[-1] for t in TRACKS].index(labels[TOTAL_LENGTH])


# -- windows ----------------------------------------------------------------------------------

def test_top_level_windows_follow_their_tracks(codes_dir):
    task = PriorTask.from_codes(get_preset("tiny"), codes_dir, 2, 32, lyrics=True)
    config = task.config
    assert (config.l_bins, config.artist_bins, config.genre_bins) == (L_BINS, 3, 3)
    assert config.max_duration == np.ceil(150 * 128 / RATE) and config.lyrics
    batch = numpy_batch(task)
    n_ctx, hop = config.n_ctx, HOPS[2]
    assert batch["codes"].shape == (32, n_ctx) and batch["labels"].shape == (32, 4 + 4)
    seen = set()
    for codes, mask, y, chars in zip(batch["codes"], batch["mask"], batch["labels"],
                                     batch["lyrics"]):
        k = track_of(y)
        seen.add(k)
        start, length = y[OFFSET] // hop, TRACKS[k][0]
        assert y[OFFSET] % hop == 0 and y[LENGTH] == n_ctx * hop
        assert y[ARTIST] == TRACKS[k][1] and list(y[GENRES:]) == (TRACKS[k][2] + [-1] * 4)[:4]
        inside = np.arange(start, start + n_ctx) < length
        np.testing.assert_array_equal(mask, inside)
        expected = [code(k, 2, t) for t in range(start, start + n_ctx)]
        np.testing.assert_array_equal(codes[inside], np.asarray(expected)[inside])
        assert (codes[~inside] == 0).all()
        assert start + n_ctx <= max(length, n_ctx)  # windows stay inside long tracks
        window, _ = lyrics.lyric_window(lyrics.encode(TRACKS[k][3]), y[TOTAL_LENGTH],
                                        y[OFFSET], y[LENGTH], config.n_lyric_tokens)
        np.testing.assert_array_equal(chars, window)
    assert seen == {0, 1, 2}


def test_upsampler_windows_line_up_with_the_level_above(codes_dir):
    task = PriorTask.from_codes(get_preset("tiny_upsampler"), codes_dir, 1, 32)
    config = task.config
    assert config.is_upsampler and config.hop_ratio == 4 and not config.has_timing
    batch = numpy_batch(task, seed=(3, 1))
    assert batch["upper_codes"].shape == (32, config.n_ctx // 4)
    for codes, upper, y in zip(batch["codes"], batch["upper_codes"], batch["labels"]):
        k, start = track_of(y), y[OFFSET] // HOPS[1]
        assert start % 4 == 0
        inside = np.arange(start, start + config.n_ctx) < TRACKS[k][0] * 4
        np.testing.assert_array_equal(
            codes[inside], [code(k, 1, t) for t in range(start, start + config.n_ctx)
                            if t < TRACKS[k][0] * 4])
        up_inside = np.arange(start // 4, start // 4 + config.n_ctx // 4) < TRACKS[k][0]
        np.testing.assert_array_equal(
            upper[up_inside], [code(k, 2, t) for t in range(start // 4, start // 4 + 16)
                               if t < TRACKS[k][0]])
    out = task.build()(batch)
    assert np.isfinite(float(out["loss"]))


def test_tracks_drawn_by_length_and_seeds_reproducible(codes_dir):
    task = PriorTask.from_codes(get_preset("tiny"), codes_dir, 2, 8)
    batch = numpy_batch(task, seed=(5, 0), batch_size=3000)
    counts = np.bincount([track_of(y) for y in batch["labels"]], minlength=3) / 3000
    np.testing.assert_allclose(counts, np.array([150, 70, 20]) / 240, atol=0.03)
    again = numpy_batch(task, seed=(5, 0), batch_size=3000)
    np.testing.assert_array_equal(batch["codes"], again["codes"])

    def first(pipeline, seed):
        context = tf.distribute.InputContext(num_input_pipelines=2, input_pipeline_id=pipeline,
                                             num_replicas_in_sync=2)
        return next(iter(task.dataset(context, seed)))["labels"].numpy()

    a, b = first(0, 1), first(1, 1)
    assert a.shape == (4, 8) and not np.array_equal(a, b)  # per-replica half of 8
    np.testing.assert_array_equal(a, first(0, 1))
    assert not np.array_equal(a, first(0, 2))


def test_chunks_placed_at_their_offsets():
    hop = 8

    def chunk(offset, n):
        return {"offset": offset, "num_samples": n, 0: np.arange(-(-n // hop)) + offset // hop}

    # Overlap: the second chunk starts inside the first and overwrites its padded tail.
    codes, valid = _track_tokens([chunk(0, 100), chunk(96, 100)], 0, hop)
    assert len(codes) == 25 and valid.all()
    np.testing.assert_array_equal(codes, np.arange(25))
    # A gap (a chunk missing): its tokens are masked.
    codes, valid = _track_tokens([chunk(0, 80), chunk(160, 80)], 0, hop)
    assert list(valid) == [True] * 10 + [False] * 10 + [True] * 10


def test_missing_chunks_are_masked(tmp_path):
    codes_dir = write_codes(str(tmp_path / "codes"), tracks=TRACKS[:1], skip_chunks={(0, 2)})
    data = CodesData.load(codes_dir, [2])
    assert data.levels[2].lengths.tolist() == [150]
    assert (~data.levels[2].valid).nonzero()[0].tolist() == list(range(32, 48))


def test_labels_free_dataset_and_config_errors(tmp_path):
    codes_dir = write_codes(str(tmp_path / "codes"), tracks=[(80, 0, [], "")],
                            artists=("unknown",), genres=("unknown",))
    for labels in (True, False):
        task = PriorTask.from_codes(get_preset("tiny"), codes_dir, 2, 4, labels=labels)
        assert task.config.labels == labels
        batch = next(iter(task.dataset(None, 0)))
        assert ("labels" in batch) == labels
        assert np.isfinite(float(task.loss(task.build(), batch, True)[0]))
    from jukebox_tf.errors import JukeboxError
    with pytest.raises(JukeboxError, match="bins"):
        PriorTask(get_preset("tiny"), codes_dir, 4)  # 32 bins, the codes have 64
    with pytest.raises(JukeboxError, match="no level 3"):
        CodesData.load(codes_dir, [3])


# -- train-prior ------------------------------------------------------------------------------

def run_cli(*argv):
    from jukebox_tf.cli import prior as prior_cli

    parser = argparse.ArgumentParser()
    prior_cli.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args([str(a) for a in argv])
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert args.func(args) == 0
    return out.getvalue()


@pytest.mark.slow
def test_train_prior_resume_and_load(codes_dir, tmp_path):
    run = tmp_path / "top"
    common = ("--codes", codes_dir, "--preset", "tiny", "--out", run, "--batch-size", 2,
              "--quiet", "--log-every", 1, "--checkpoint-every", 2)
    first = run_cli("train-prior", "--level", 2, "--steps", 2, "--lyrics", "--media-every", 2,
                    *common)
    assert "trained the prior (level 2): step 2" in first and "bits/token" in first
    assert "tensorboard" in first
    tags = set()
    for path in glob.glob(str(run / "tensorboard" / "**" / "events.*"), recursive=True):
        tags.update(v.tag for e in tf.compat.v1.train.summary_iterator(path)
                    for v in e.summary.value)
    assert {"bits_per_token", "lyric_bits_per_token", "codes/predicted"} <= tags
    again = run_cli("train-prior", "--level", 2, "--steps", 3, "--resume", *common)
    assert "step 3" in again
    info = prior_run_info(str(run))
    assert info["codes"]["hop_lengths"] == list(HOPS) and info["codes"]["level"] == 2
    assert info["codes"]["artists"] == ["unknown", "ann", "bob"]
    assert info["prior"]["lyrics"] and info["codes"]["sample_rate"] == RATE
    model = load_prior_run(str(run))
    task = PriorTask.from_codes(get_preset("tiny"), codes_dir, 2, 2, lyrics=True)
    batch = numpy_batch(task, batch_size=2)
    cond = model.conditioning(batch)
    logits, _ = model.step(batch["codes"][:, :1], 0, model.init_cache(2, cond), cond)
    np.testing.assert_allclose(logits[:, 0], model(batch)["logits"][:, 0], atol=1e-5)


def test_train_prior_with_the_lyrics_as_a_prefix(codes_dir, tmp_path):
    """--lyrics prefix: the 1B lyrics model's layout, trained on the windows' lyric
    characters; the run loads as a LyricPrefixPrior whose cached step gives the forward pass's
    logits and whose samples are codes."""
    from jukebox_tf.errors import JukeboxError
    from jukebox_tf.prior.prior import LyricPrefixPrior
    from jukebox_tf.sampling.sampler import sample_window

    run = tmp_path / "top"
    out = run_cli("train-prior", "--level", 2, "--codes", codes_dir, "--preset", "tiny",
                  "--out", run, "--steps", 2, "--batch-size", 2, "--lyrics", "prefix",
                  "--quiet")
    assert "trained the prior (level 2): step 2" in out and "lyric bits/token" in out
    model = load_prior_run(str(run))
    assert isinstance(model, LyricPrefixPrior) and model.config.single_enc_dec
    task = PriorTask.from_codes(get_preset("tiny"), codes_dir, 2, 2, lyrics="prefix")
    batch = numpy_batch(task, batch_size=2)
    assert batch["lyrics"].shape == (2, model.config.n_lyric_tokens)
    cond = model.conditioning(batch)
    tokens = model.to_tokens(batch["codes"][:, :1])
    cache = model.prime(tokens, 0, model.init_cache(2, cond), cond)
    logits, _ = model.step(tokens, 0, cache, cond)
    full = model(batch)
    np.testing.assert_allclose(logits[:, 0, model.config.n_vocab:], full["logits"][:, 0],
                               atol=1e-5)
    assert np.isfinite(full["metrics"]["lyric_bits_per_token"])
    codes = sample_window(model, cond, batch["codes"][:, :5], 6, seed=1)
    assert codes.shape == (2, 6) and codes.min() >= 0 and codes.max() < model.config.l_bins
    with pytest.raises(JukeboxError, match="lyrics 'both': choose from encoder, prefix"):
        PriorTask.from_codes(get_preset("tiny"), codes_dir, 2, 2, lyrics="both")


@pytest.mark.slow
def test_train_upsampler(codes_dir, tmp_path):
    out = run_cli("train-prior", "--level", 1, "--codes", codes_dir, "--preset", "tiny",
                  "--out", tmp_path / "up", "--steps", 1, "--batch-size", 2, "--quiet")
    assert "trained the upsampler (level 1): step 1" in out
    assert prior_run_info(str(tmp_path / "up"))["prior"]["level"] == 1


@pytest.mark.slow
def test_train_prior_as_two_local_workers_stops_together_on_ctrl_c(codes_dir, tmp_path):
    """--local-workers 2: two processes of one multi-worker cluster (neither could finish
    alone: every step all-reduces). One SIGINT to the command reaches both workers once:
    they stop at the same step, after a checkpoint."""
    import signal
    import subprocess
    import sys
    import time

    run = tmp_path / "top"
    cmd = [sys.executable, "-m", "jukebox_tf", "train-prior", "--level", "2", "--codes",
           codes_dir, "--preset", "tiny", "--out", str(run), "--batch-size", "2",
           "--local-workers", "2", "--quiet", "--log-every", "1", "--checkpoint-every", "4"]
    done = subprocess.run(cmd + ["--steps", "4"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "starting 2 local workers (1 thread each" in done.stdout
    assert "trained the prior (level 2): step 4" in done.stdout
    log = (run / "workers" / "worker-1.log").read_text()
    assert "trained the prior (level 2): step 4" in log
    # Only the chief wrote checkpoints; the run loads like a one-process run.
    assert sorted(p.name for p in (run / "checkpoints").glob("*.index")) == ["ckpt-4.index"]
    assert load_prior_run(str(run)).config.level == 2

    proc = subprocess.Popen(cmd + ["--steps", "100000", "--resume"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 240
        while not list((run / "checkpoints").glob("ckpt-8.index")):
            assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
            time.sleep(0.5)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, out + err
    stopped = re.search(r"trained the prior \(level 2\): step (\d+)", out)
    assert stopped and 8 <= int(stopped[1]) < 100000, out
    log = (run / "workers" / "worker-1.log").read_text()
    assert f"trained the prior (level 2): step {stopped[1]}," in log
    assert err.count("received SIGINT") == 1  # the chief's; worker 1's went to its log
    assert f"ckpt-{stopped[1]}.index" in os.listdir(run / "checkpoints")


@pytest.mark.slow
def test_local_workers_report_the_failed_worker(codes_dir, tmp_path):
    import subprocess
    import sys

    cmd = [sys.executable, "-m", "jukebox_tf", "train-prior", "--level", "2", "--preset",
           "tiny", "--out", str(tmp_path / "run"), "--steps", "2", "--quiet"]
    bad = subprocess.run(cmd + ["--codes", str(tmp_path / "missing"), "--batch-size", "2",
                                "--local-workers", "2"], capture_output=True, text=True,
                         timeout=300)
    assert bad.returncode == 2, bad.stdout + bad.stderr
    assert "missing" in bad.stderr  # the chief's own error
    assert re.search(r"local worker \d exited with code 2", bad.stderr)
    odd = subprocess.run(cmd + ["--codes", codes_dir, "--batch-size", "3", "--local-workers",
                                "2"], capture_output=True, text=True, timeout=120)
    assert odd.returncode == 2 and "--batch-size 3 is not divisible by the 2 local" in odd.stderr
    assert "starting" not in odd.stdout  # checked before any worker starts


# One worker of a TFX Trainer with several workers: what the stock Trainer executor does with
# the run_fn (on Vertex or Kubeflow, TF_CONFIG names the cluster).
_TRAINER_WORKER = """
import sys, types
from pipeline.components.trainer_fns import prior_run_fn
codes, out, logs = sys.argv[1:]
# The fields of TFX's FnArgs the run_fn reads (base_model: None without a base_model input).
prior_run_fn(types.SimpleNamespace(
    custom_config={"preset": "tiny", "level": 2, "batch_size": 2,
                   "train": {"global_batch_size": 2, "checkpoint_every": 2, "log_every": 1}},
    train_files=[codes + "/*"], train_steps=2, serving_model_dir=out, model_run_dir=logs,
    base_model=None))
"""


@pytest.mark.slow
def test_tfx_prior_run_fn_trains_as_two_workers(codes_dir, tmp_path):
    """The Trainer's run_fn under a two-worker TF_CONFIG: it creates the strategy before it
    reads the codes (otherwise: "Collective ops must be configured at program startup")."""
    import sys

    from jukebox_tf.training.local_workers import run_local_workers

    out, logs = tmp_path / "model", tmp_path / "model_run"
    code = run_local_workers([codes_dir, str(out), str(logs)], 2, str(tmp_path / "workers"),
                             program=[sys.executable, "-c", _TRAINER_WORKER])
    assert code == 0, (tmp_path / "workers" / "worker-1.log").read_text()
    assert sorted(p.name for p in (out / "checkpoints").glob("*.index")) == ["ckpt-2.index"]
    assert load_prior_run(str(out)).config.level == 2
    assert glob.glob(str(logs / "**" / "events.out.tfevents.*"), recursive=True)
