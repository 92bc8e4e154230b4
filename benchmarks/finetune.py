"""Fine-tuning against training from scratch on the same wall-clock budget, on real music.

    python benchmarks/finetune.py --json PATH [--quick] [--budget-s S] [--music DIR]
                                  [--paper-run RUN]

The music is Debian's drascula-music (the base: a few hours of game music) and asc-music (the
new music: three tracks, the last held out), fetched as benchmarks/ingest.py does. Every step
is the command a user runs, as its own process:

1. `ingest` both at 22,050 Hz; `train-vqvae --preset small` on both for the budget (SIGTERM
   ends a run: the loop saves and exits), `encode` both.
2. `train-prior --level 2 --preset small` on the base music for the budget: the starting model.
3. (a) `train-prior --init-from` the starting model and (b) `train-prior` from scratch, on the
   new music's training tracks, each for the budget, with the same options (weight decay
   0.01; the learning rate annealed to 0 at the step count the starting model's rate reaches
   in the budget).
4. Held-out bits per token of (a), (b), the starting model and the held-out codes' own unigram
   distribution (its entropy: no model of single codes does better), `evaluate_prior` with each
   model's vocabulary; steps per second of each run.
5. `encode` with the `paper` VQ-VAE (the released layout, 44.1 kHz; --paper-run: an imported
   one, else random weights of that layout, which encode as fast): the cost of preparing a
   fine-tuning set for the released models, in audio-seconds per wall-second of the command.

--quick: a budget of 5 minutes per run and 12 minutes of the base music (about 35 minutes in
all on 2 cores); the default budget is 15 minutes with 40 minutes of base music.
"""

from __future__ import annotations

import argparse
import math
import os
import signal
import subprocess
import sys
import tempfile
import time

import numpy as np

from bench_common import write_result

HERE = os.path.dirname(os.path.abspath(__file__))
AUDIO = (".ogg", ".mp3", ".flac", ".wav")
RATE = 22050
PAPER_SECONDS = 120.0  # audio the paper VQ-VAE encodes
ARTISTS = {"drascula-music": "Drascula", "asc-music": "ASC Games"}  # package -> artist name


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def jukebox(*argv, timeout: float | None = None) -> float:
    """Runs `jukebox-tf ARGV` as a user would; SIGTERM after `timeout` seconds (training then
    saves and exits). Returns the wall time."""
    start = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "jukebox_tf", *map(str, argv)])
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGTERM)
        proc.wait()
    if proc.returncode not in (0, -signal.SIGTERM):
        raise SystemExit(f"jukebox-tf {argv[0]} failed with exit status {proc.returncode}")
    return time.perf_counter() - start


def link_tracks(paths: list[str], folder: str, artists: dict[str, str]) -> str:
    """A folder of links to `paths` with a metadata.csv naming each track's artist (the
    package it comes from: {package folder: artist}), so fine-tuning maps a new name."""
    os.makedirs(folder)
    rows = ["path,artist,genre,lyrics"]
    for i, path in enumerate(paths):
        name = f"{i:03d}_{os.path.basename(path)}"
        os.symlink(path, os.path.join(folder, name))
        artist = next(a for package, a in artists.items() if f"{os.sep}{package}{os.sep}" in path)
        rows.append(f"{name},{artist},game music,")
    with open(os.path.join(folder, "metadata.csv"), "w") as f:
        f.write("\n".join(rows) + "\n")
    return folder


def tracks_of(folder: str, max_seconds: float | None = None) -> list[str]:
    """Audio files under `folder` in path order (one per name: packages ship copies), up to
    `max_seconds` of audio."""
    import soundfile as sf

    found, seconds, names = [], 0.0, set()
    for root, _, files in sorted(os.walk(folder)):
        for name in sorted(files):
            if not name.lower().endswith(AUDIO) or os.path.splitext(name)[0] in names:
                continue
            if max_seconds is not None and seconds >= max_seconds:
                return found
            path = os.path.join(root, name)
            seconds += sf.info(path).duration
            names.add(os.path.splitext(name)[0])
            found.append(path)
    return found


def last_step(run: str) -> int:
    from jukebox_tf.training.checkpoints import latest_checkpoint

    path = latest_checkpoint(os.path.join(run, "checkpoints"))
    return int(path.rsplit("-", 1)[1]) if path else 0


def unigram_bits(codes_dir: str) -> float:
    """Entropy in bits of the held-out top-level codes' own distribution."""
    from jukebox_tf.codes.tracks import CodesData

    data = CodesData.load(codes_dir, [2])
    counts = np.bincount(data.levels[2].codes[data.levels[2].valid].astype(np.int64))
    p = counts[counts > 0] / counts.sum()
    return float(-(p * np.log2(p)).sum())


def held_out_bits(run: str, codes_dir: str) -> float:
    from jukebox_tf.prior.evaluate import evaluate_prior
    from jukebox_tf.prior.task import load_prior_run, prior_run_vocab

    return evaluate_prior(load_prior_run(run), codes_dir, vocab=prior_run_vocab(run))[
        "bits_per_token"]


def paper_encode(work: str, tracks: list[str], paper_run: str | None) -> dict:
    """`encode` with the paper VQ-VAE of PAPER_SECONDS of music ingested at 44.1 kHz."""
    from jukebox_tf.audio.dataset import load_manifest
    from jukebox_tf.training import TrainConfig, train
    from jukebox_tf.vqvae import get_preset
    from jukebox_tf.vqvae.task import VQVAETask

    if paper_run is None:
        paper_run = os.path.join(work, "paper_vqvae")
        train(VQVAETask(get_preset("paper"), None, 1), TrainConfig(steps=0, global_batch_size=1),
              paper_run, progress=False)  # its initial weights: the layout is what costs
    data = os.path.join(work, "paper_data")
    jukebox("ingest", link_tracks(tracks, os.path.join(work, "paper_audio"), ARTISTS), data,
            "--sample-rate", 44100, "--quiet")
    seconds = load_manifest(data)["total_seconds"]
    wall = jukebox("encode", "--run", paper_run, "--data", data, "--out",
                   os.path.join(work, "paper_codes"), "--quiet")
    return {"paper_encode_audio_s": seconds, "paper_encode_wall_s": wall,
            "paper_encode_audio_s_per_s": seconds / wall, "paper_run": paper_run}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", required=True)
    parser.add_argument("--quick", action="store_true", help="5-minute budgets (~35 min)")
    parser.add_argument("--budget-s", type=float, help="seconds per training run")
    parser.add_argument("--music", help="folder holding drascula-music/ and asc-music/ "
                                        "(default: fetched into the cache)")
    parser.add_argument("--paper-run", help="an imported `paper` VQ-VAE run to time encode with")
    parser.add_argument("--work", help="working folder (default: a temporary one)")
    args = parser.parse_args()
    budget = args.budget_s or (300.0 if args.quick else 900.0)
    base_seconds = 12 * 60.0 if args.quick else 40 * 60.0

    sys.path.insert(0, HERE)
    from ingest import PACKAGES, fetch_package, music_cache

    music = args.music or music_cache()
    if args.music is None:
        for package in PACKAGES:
            fetch_package(package, music)
    base_tracks = tracks_of(os.path.join(music, "drascula-music"), base_seconds)
    new_tracks = tracks_of(os.path.join(music, "asc-music"))
    if len(new_tracks) < 2 or not base_tracks:
        raise SystemExit(f"{music}: need drascula-music/ and at least 2 asc-music/ tracks")
    held_out, new_train = new_tracks[-1:], new_tracks[:-1]
    work = args.work or tempfile.mkdtemp(prefix="finetune-bench-")
    log(f"work folder {work}; budget {budget:.0f} s per run; base music "
        f"{len(base_tracks)} tracks, new music {len(new_train)} tracks + {len(held_out)} held out")

    data = {}
    for name, tracks in (("base", base_tracks), ("new", new_train), ("held_out", held_out)):
        data[name] = os.path.join(work, f"{name}_data")
        jukebox("ingest", link_tracks(tracks, os.path.join(work, f"{name}_audio"), ARTISTS),
                data[name],
                "--sample-rate", RATE, "--quiet")
    vqvae = os.path.join(work, "vqvae")
    log("training the small VQ-VAE on the base and new music")
    both = link_tracks(base_tracks + new_train, os.path.join(work, "both_audio"), ARTISTS)
    jukebox("ingest", both, os.path.join(work, "both_data"), "--sample-rate", RATE, "--quiet")
    jukebox("train-vqvae", "--data", os.path.join(work, "both_data"), "--preset", "small",
            "--steps", 10_000_000, "--out", vqvae, "--checkpoint-every", 200, "--quiet",
            timeout=budget)
    codes = {}
    for name in data:
        codes[name] = os.path.join(work, f"{name}_codes")
        jukebox("encode", "--run", vqvae, "--data", data[name], "--out", codes[name], "--quiet")

    common = ("--level", 2, "--batch-size", 4, "--checkpoint-every", 100, "--quiet")
    runs = {k: os.path.join(work, k) for k in ("start", "finetune", "scratch")}
    log("training the starting prior on the base music")
    wall = {"start": jukebox("train-prior", "--codes", codes["base"], "--preset", "small",
                             "--steps", 10_000_000, "--out", runs["start"], *common,
                             timeout=budget)}
    rate = last_step(runs["start"]) / wall["start"]
    steps = max(10, int(rate * budget))  # the anneal reaches 0 about when the budget ends
    tuning = ("--steps", steps, "--weight-decay", 0.01, *common)
    log(f"fine-tuning it on the new music ({steps} steps at most)")
    wall["finetune"] = jukebox("train-prior", "--codes", codes["new"], "--init-from",
                               runs["start"], "--out", runs["finetune"], *tuning, timeout=budget)
    log("training from scratch on the new music")
    wall["scratch"] = jukebox("train-prior", "--codes", codes["new"], "--preset", "small",
                              "--out", runs["scratch"], *tuning, timeout=budget)

    log("evaluating on the held-out track")
    from jukebox_tf.codes.format import load_codes_manifest

    result = {"budget_s": budget, "quick": args.quick, "held_out": held_out,
              "base_tracks": len(base_tracks), "new_train_tracks": len(new_train),
              "finetune_bits_per_token": held_out_bits(runs["finetune"], codes["held_out"]),
              "scratch_bits_per_token": held_out_bits(runs["scratch"], codes["held_out"]),
              "start_bits_per_token": held_out_bits(runs["start"], codes["held_out"]),
              "unigram_bits_per_token": unigram_bits(codes["held_out"]),
              "uniform_bits_per_token": math.log2(load_codes_manifest(codes["new"])["l_bins"]),
              "anneal_steps": steps}
    for name, run in runs.items():
        result[f"{name}_steps"] = last_step(run)
        result[f"{name}_steps_per_s"] = last_step(run) / wall[name]
    log("timing encode with the paper VQ-VAE at 44.1 kHz")
    paper_tracks = tracks_of(os.path.join(music, "drascula-music"), PAPER_SECONDS)
    result.update(paper_encode(work, paper_tracks, args.paper_run))
    result["meets_targets"] = {
        "finetune_beats_scratch": result["finetune_bits_per_token"]
        < result["scratch_bits_per_token"],
        "both_beat_unigram": max(result["finetune_bits_per_token"],
                                 result["scratch_bits_per_token"])
        < result["unigram_bits_per_token"]}

    print(f"\nheld-out bits per token (budget {budget:.0f} s per run)")
    for key in ("finetune", "scratch", "start", "unigram", "uniform"):
        steps_info = (f"  ({result[key + '_steps']} steps, {result[key + '_steps_per_s']:.2f}/s)"
                      if key + "_steps" in result else "")
        print(f"  {key:10s} {result[key + '_bits_per_token']:.3f}{steps_info}")
    print(f"paper VQ-VAE encode: {result['paper_encode_audio_s_per_s']:.2f} audio-s/s "
          f"({result['paper_encode_audio_s']:.0f} s of audio in "
          f"{result['paper_encode_wall_s']:.0f} s, the whole command)")
    return write_result(args.json, result)


if __name__ == "__main__":
    sys.exit(main())
