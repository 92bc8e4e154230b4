"""VQ-VAE speed and memory benchmark: train step, encode and decode throughput.

    python benchmarks/vqvae.py --preset small --json PATH [--quick] [--threads 2]
                               [--mixed-precision bfloat16] [--precision bfloat16]
    python benchmarks/vqvae.py --run RUN_DIR --json PATH [--quick] [--threads 2]
                               [--precision bfloat16]

Measures, on one process limited to `--threads` CPU threads (2 = the reference machine):
  * train_step_s_median: the compiled step `jukebox-tf train-vqvae` runs (forward, losses,
    codebook EMA, gradients, clipping, Adam, weight EMA) at batch 4 x 32768 samples;
  * encode_audio_s_per_s: audio seconds encoded per wall second, all three levels at once,
    and encode_level_audio_s_per_s / decode_level_audio_s_per_s per level (batch 1, 10 s clips),
    in --precision (the CLI's encode/reconstruct option; float32 by default);
  * peak_rss_mb (VmHWM of this process) and params (trainable).
Medians over repeats after one warm-up call; the first-call time (tracing) is reported apart.
Reference figures of the original PyTorch implementation on the same machine kind are in
REFERENCE (1.33 s/step, 34 audio-s/s encode, 92 audio-s/s decode from level 0); the targets
are 1.25x better on every figure.

With --run, encode and decode are timed on the VQ-VAE of a run directory (one `train-vqvae` or
`import-weights` wrote), restored as `jukebox-tf encode --run` restores it (its EMA weights;
an imported run's own), instead of on a fresh --preset model. There is no train step then (its
time does not depend on the weights: `--preset` of the same sizes gives it), nor a comparison
with the PyTorch figures, which are the `small` VQ-VAE's; the table and the JSON (`run`,
`run_imported`) say which run was timed.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import platform
import sys

from bench_common import peak_rss_mb, precision_copy, timed, write_result

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

PYTORCH = {"train_step_s": 1.33, "encode_audio_s_per_s": 34.0, "decode_l0_audio_s_per_s": 92.0}
SPEEDUP = 1.25


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="small")
    parser.add_argument("--run", default=None, metavar="RUN_DIR",
                        help="time encode and decode of this run's VQ-VAE instead of a fresh "
                             "--preset model (no train step)")
    parser.add_argument("--json", required=True)
    parser.add_argument("--quick", action="store_true", help="fewer repeats, shorter clips")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--sample-length", type=int, default=32768)
    parser.add_argument("--mixed-precision", choices=("float16", "bfloat16"), default=None,
                        help="the training loop's mixed-precision option")
    parser.add_argument("--precision", choices=("float32", "bfloat16"), default="float32",
                        help="encode and decode precision (`jukebox-tf encode/reconstruct "
                             "--precision`), whatever the training ran in")
    args = parser.parse_args()
    if args.run and args.mixed_precision:
        parser.error("--mixed-precision is the train step's option; --run times no train step")

    import numpy as np
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    tf.config.threading.set_inter_op_parallelism_threads(args.threads)
    from jukebox_tf.training import TrainConfig, compiled_step
    from jukebox_tf.vqvae import get_preset
    from jukebox_tf.vqvae.task import VQVAETask
    from jukebox_tf.vqvae.vqvae import build_vqvae

    repeats = 3 if args.quick else 10
    rng = np.random.RandomState(0)
    if args.run:
        model, source = load_run(args.run, args.precision)
        return time_codec(args, model, repeats, rng, source=source)
    config = dataclasses.replace(get_preset(args.preset), sample_length=args.sample_length)
    t = np.arange(args.sample_length) / config.sample_rate
    windows = np.stack([0.3 * np.sin(2 * np.pi * rng.uniform(80, 2000) * t)
                        + 0.05 * rng.randn(len(t)) for _ in range(args.batch_size)])
    windows = windows.astype(np.float32)[..., None]

    class Synthetic(VQVAETask):  # step time does not depend on what the audio is
        def dataset(self, input_context, seed):
            return tf.data.Dataset.from_tensors(windows).repeat()

    task = Synthetic(config, None, args.batch_size, {"l2": 0.05, "l1": 0.2, "spec": 50.0})
    step, iterator, model = compiled_step(task, TrainConfig(
        steps=10**6, global_batch_size=args.batch_size, warmup_steps=0,
        mixed_precision=args.mixed_precision))
    first_step, step_s = timed(lambda: step(iterator, False)[0]["loss"].numpy(), repeats)
    print(f"train step: {step_s:.3f} s median ({args.batch_size} x {args.sample_length}), "
          f"first call {first_step:.1f} s", flush=True)

    if args.mixed_precision or args.precision != "float32":
        model = precision_copy(model, lambda: build_vqvae(config), args.precision)
    return time_codec(args, model, repeats, rng, step_s, first_step)


def load_run(run_dir: str, precision: str):
    """(model, run description) of a run directory's VQ-VAE, as `jukebox-tf encode` loads it."""
    from jukebox_tf.training.run_dir import read_task_json
    from jukebox_tf.vqvae.task import load_vqvae_run

    saved = read_task_json(run_dir, "vqvae", "VQ-VAE", "train-vqvae")
    return load_vqvae_run(run_dir, precision=precision), {
        "run": os.path.abspath(run_dir), "run_imported": saved.get("imported")}


def time_codec(args, model, repeats, rng, step_s=None, first_step=None,
               source=None) -> int:
    """Times encode and decode of `model` (a fresh preset model after the train step, or
    with `source` from load_run, a run's), prints the table and writes the JSON."""
    import numpy as np
    import tensorflow as tf

    source = source or {"run": None}
    config = model.config
    clip_s = 4.0 if args.quick else 10.0
    top = config.hop_lengths[-1]
    length = int(clip_s * config.sample_rate) // top * top
    clip = tf.constant(rng.randn(1, length, 1).astype(np.float32) * 0.1)
    seconds = length / config.sample_rate
    encode_all = tf.function(lambda x: model.encode(x))
    _, all_s = timed(lambda: [c.numpy() for c in encode_all(clip)], repeats)
    encode_levels, decode_levels = [], []
    for level in range(config.levels):
        enc = tf.function(lambda x, level=level: model.encode(x, levels=[level])[0])
        dec = tf.function(lambda c, level=level: model.decode(c, level))
        codes = enc(clip)
        _, e = timed(lambda: enc(clip).numpy(), repeats)
        _, d = timed(lambda: dec(codes).numpy(), repeats)
        encode_levels.append(seconds / e)
        decode_levels.append(seconds / d)
    timed_run = source["run"] is not None
    result = {
        "preset": None if timed_run else args.preset, **source, "threads": args.threads,
        "quick": args.quick, "clip_s": seconds, "sample_rate": config.sample_rate,
        "hop_lengths": list(config.hop_lengths),
        "batch_size": None if timed_run else args.batch_size,
        "sample_length": None if timed_run else args.sample_length,
        "mixed_precision": args.mixed_precision, "precision": args.precision,
        "train_step_s_median": step_s, "train_step_first_call_s": first_step,
        "encode_audio_s_per_s": seconds / all_s,
        "encode_level_audio_s_per_s": encode_levels,
        "decode_level_audio_s_per_s": decode_levels,
        "peak_rss_mb": peak_rss_mb(),
        "params": int(sum(np.prod(v.shape) for v in model.trainable_variables)),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                    "python": sys.version.split()[0], "tensorflow": tf.__version__},
    }
    if not timed_run:  # the PyTorch figures are the `small` VQ-VAE's
        result["pytorch_reference"] = PYTORCH
        result["speedup_vs_pytorch"] = {
            "train_step": PYTORCH["train_step_s"] / step_s,
            "encode": (seconds / all_s) / PYTORCH["encode_audio_s_per_s"],
            "decode_l0": decode_levels[0] / PYTORCH["decode_l0_audio_s_per_s"]}
        result["meets_targets"] = {k: v >= SPEEDUP
                                   for k, v in result["speedup_vs_pytorch"].items()}
    rows = [] if timed_run else [("train step (s)", step_s, PYTORCH["train_step_s"])]
    rows += [("encode, all levels (audio-s/s)", result["encode_audio_s_per_s"],
              PYTORCH["encode_audio_s_per_s"])]
    rows += [(f"encode level {l} (audio-s/s)", v, None) for l, v in enumerate(encode_levels)]
    rows += [(f"decode level {l} (audio-s/s)", v, PYTORCH["decode_l0_audio_s_per_s"] if l == 0
              else None) for l, v in enumerate(decode_levels)]
    if timed_run:
        print(f"\nrun {source['run']} ({result['params']:,} parameters, "
              f"{config.sample_rate} Hz, hops {'/'.join(map(str, config.hop_lengths))}; "
              f"{args.precision}, {seconds:.1f} s clips, {args.threads} threads)")
        print(f"{'figure':34} {'jukebox-tf':>12}")
        for name, value, _ in rows:
            print(f"{name:34} {value:12.3f}")
        print(f"peak RSS {result['peak_rss_mb']:.0f} MB")
    else:
        print(f"\n{'figure':34} {'jukebox-tf':>12} {'PyTorch ref':>12}")
        for name, value, ref in rows:
            print(f"{name:34} {value:12.3f} {ref if ref is not None else '':>12}")
        print(f"peak RSS {result['peak_rss_mb']:.0f} MB, {result['params']} parameters; "
              f"speedups "
              f"{', '.join(f'{k} {v:.2f}x' for k, v in result['speedup_vs_pytorch'].items())}")
    write_result(args.json, result)  # the targets are in the JSON; the exit status stays 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
