"""VQ-VAE quality on a wall-clock budget: train on real music, score two held-out tracks.

    python benchmarks/vqvae_quality.py --json PATH [--music DIR] [--minutes 30]
                                       [--preset small] [--run RUN_DIR] [--evaluate-only]
                                       [--mixed-precision bfloat16] [--precision bfloat16]

Without --music it uses Debian's asc-music and drascula-music (fetched as benchmarks/ingest.py
does). The last two tracks in path order are held out; the rest are ingested at the preset's
rate and `jukebox-tf train-vqvae` runs for --minutes of wall-clock time (then SIGTERM: the loop
saves and exits). Each held-out track is then reconstructed from every level with the EMA
weights. Reported per level: spectral convergence in dB (the original's definition, STFT
2048/256/1536) per track and their mean, and the number of distinct codes used on the held-out
tracks. The REFERENCE's PyTorch figures for `small` after 20 minutes: about -13 to -17 dB at
level 0, -11 dB at level 1, -4.5 dB at level 2.
"""

from __future__ import annotations

import argparse
import glob
import os
import subprocess
import sys
import tempfile
import time

from bench_common import write_result

HERE = os.path.dirname(os.path.abspath(__file__))
AUDIO = (".ogg", ".mp3", ".flac", ".wav")


def tracks_in(folder: str) -> list[str]:
    found = {os.path.realpath(p) for p in glob.glob(os.path.join(folder, "**", "*"),
                                                    recursive=True)
             if p.lower().endswith(AUDIO)}
    return sorted(found)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", required=True)
    parser.add_argument("--music", help="folder of music (default: the Debian packages)")
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--preset", default="small")
    parser.add_argument("--run", help="run directory (default: a temp folder)")
    parser.add_argument("--evaluate-only", action="store_true",
                        help="skip training; score the existing --run")
    parser.add_argument("--mixed-precision", choices=("float16", "bfloat16"), default=None,
                        help="train-vqvae's mixed-precision option")
    parser.add_argument("--precision", choices=("float32", "bfloat16"), default="float32",
                        help="the precision scoring reconstructs in (reconstruct's --precision)")
    parser.add_argument("--weights", choices=("ema", "raw"), default="ema",
                        help="score the EMA weights (what reconstruct/encode use) or the raw ones")
    args = parser.parse_args()

    if args.music is None:
        sys.path.insert(0, HERE)
        from ingest import PACKAGES, fetch_package, music_cache  # the ingest benchmark's fetch

        for package in PACKAGES:
            fetch_package(package, music_cache())
        args.music = music_cache()
    tracks = tracks_in(args.music)
    if len(tracks) < 3:
        raise SystemExit(f"{args.music}: need at least 3 audio tracks, found {len(tracks)}")
    held_out, training = tracks[-2:], tracks[:-2]
    work = tempfile.mkdtemp(prefix="vqvae-quality-")
    run = args.run or os.path.join(work, "run")
    python = [sys.executable, "-m", "jukebox_tf"]
    from jukebox_tf.vqvae import get_preset

    config = get_preset(args.preset)
    trained_seconds = None
    if not args.evaluate_only:
        train_dir = os.path.join(work, "train")
        os.makedirs(train_dir)
        for i, path in enumerate(training):
            os.symlink(path, os.path.join(train_dir, f"{i:03d}_{os.path.basename(path)}"))
        data = os.path.join(work, "data")
        subprocess.run(python + ["ingest", train_dir, data, "--sample-rate",
                                 str(config.sample_rate), "--quiet"], check=True)
        start = time.time()
        proc = subprocess.Popen(python + ["train-vqvae", "--data", data, "--preset", args.preset,
                                          "--steps", "10000000", "--out", run,
                                          "--checkpoint-every", "200", "--quiet"]
                                + (["--mixed-precision", args.mixed_precision]
                                   if args.mixed_precision else []))
        try:
            proc.wait(timeout=args.minutes * 60)
        except subprocess.TimeoutExpired:
            proc.terminate()  # SIGTERM: the loop checkpoints the current step and exits
            proc.wait()
        trained_seconds = time.time() - start

    from jukebox_tf.vqvae.reconstruct import reconstruct_file
    from jukebox_tf.vqvae.task import load_vqvae_run

    model = load_vqvae_run(run, use_ema=args.weights == "ema", precision=args.precision)
    ckpt = tf_latest_step(run)
    per_level = []
    for level in range(model.config.levels):
        scores, used = {}, {}
        for path in held_out:
            name = os.path.basename(path)
            r = reconstruct_file(model, path, level, os.path.join(work, f"l{level}_{name}.wav"))
            scores[name], used[name] = r["spectral_convergence_db"], r["codes_used"]
        per_level.append({"level": level, "spectral_convergence_db": scores,
                          "mean_db": sum(scores.values()) / len(scores), "codes_used": used,
                          "l_bins": model.config.l_bins})
        print(f"level {level}: " + ", ".join(
            f"{k} {scores[k]:.2f} dB ({used[k]}/{model.config.l_bins} codes)" for k in scores),
            flush=True)
    result = {"preset": args.preset, "minutes": args.minutes, "weights": args.weights,
              "mixed_precision": args.mixed_precision, "precision": args.precision,
              "trained_seconds": trained_seconds,
              "checkpoint_step": ckpt, "held_out": held_out,
              "training_tracks": len(training), "run": run, "levels": per_level}
    return write_result(args.json, result)


def tf_latest_step(run: str) -> int | None:
    from jukebox_tf.training.checkpoints import latest_checkpoint

    path = latest_checkpoint(os.path.join(run, "checkpoints"))
    return int(path.rsplit("-", 1)[1]) if path else None


if __name__ == "__main__":
    sys.exit(main())
