"""Prior benchmark: train step and sampling throughput of a factorized-attention prior.

    python benchmarks/prior.py --preset small --json PATH [--quick] [--threads 2] [--no-xla]
                               [--mixed-precision bfloat16] [--train-workers 2]

Measures, on one process limited to `--threads` CPU threads (2 = the reference machine):
  * train_tokens_per_s: tokens per second of the compiled step `jukebox-tf train-prior` runs
    (forward, loss, gradients, clipping, Adam, weight EMA) at batch 4 x n_ctx synthetic codes
    with label conditioning (as train-prior turns it on), median over repeats. With
    --train-workers N, as `train-prior --local-workers N` runs it: N processes of one
    multi-worker cluster on localhost, threads / N each, the global batch split between them
    (the chief's median; the JSON's train_workers says which);
  * sample_tokens_per_s_1 / _4: new tokens per second drawing 512 tokens after an empty
    prime with one and with four samples per batch: the compiled cached loop (sampling/
    sampler.py: one tf.function with a tf.while_loop, XLA-compiled unless --no-xla), plus
    ms per step; the first call (tracing and compilation) is reported apart;
  * scaling: seconds to sample one whole window of n_ctx = 512, 2048, 8192 tokens (batch 1;
    blocks = n_ctx / 64, so block_ctx stays 64) with the cached compiled loop and with the
    naive loop (one uncached full forward pass over the window per token). The naive loop
    is timed on a subset of tokens and extrapolated (each of its tokens costs the same full
    pass); the JSON says how many tokens were timed;
  * peak_rss_mb (VmHWM of this process) and params (trainable, the benchmarked prior).
Medians over repeats after one warm-up call (--quick: fewer repeats, the scaling timed on
fewer tokens and extrapolated). The original PyTorch implementation measures on
the same machine kind about 23,000 training tokens/s, 1,400 sampled tokens/s with one sample
(0.72 ms per step) and 4,000 with four; the targets are 1.25x (training) and 2x (sampling).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import platform
import sys
import time

from bench_common import peak_rss_mb, precision_copy, timed, write_result

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

PYTORCH = {"train_tokens_per_s": 23000.0, "sample_tokens_per_s_1": 1400.0,
           "sample_tokens_per_s_4": 4000.0, "sample_ms_per_step_1": 0.72}
TARGET = {"train_tokens_per_s": 1.25, "sample_tokens_per_s_1": 2.0,
          "sample_tokens_per_s_4": 2.0}
SCALING_CTX = (512, 2048, 8192)
BLOCK_CTX = 64


def load_average() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="small")
    parser.add_argument("--json", required=True)
    parser.add_argument("--quick", action="store_true",
                        help="fewer repeats and timed tokens (under 90 s on 2 cores)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--new-tokens", type=int, default=512)
    parser.add_argument("--scaling-ctx", default=",".join(map(str, SCALING_CTX)),
                        help="context lengths of the scaling comparison (comma-separated)")
    parser.add_argument("--no-xla", action="store_true",
                        help="sample with the compiled loop without XLA (jit_compile=False)")
    parser.add_argument("--mixed-precision", choices=("float16", "bfloat16"), default=None,
                        help="the training loop's mixed-precision option (sampling runs in "
                             "float32, as `jukebox-tf sample` restores a run)")
    parser.add_argument("--train-workers", type=int, default=1,
                        help="time training as this many local worker processes (threads / N "
                             "each), as `jukebox-tf train-prior --local-workers N` trains")
    # One worker of --train-workers: time the training, write it to --json, stop.
    parser.add_argument("--train-worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if not args.train_worker and (args.batch_size % args.train_workers
                                  or args.threads % args.train_workers):
        parser.error(f"--batch-size {args.batch_size} and --threads {args.threads} must both "
                     f"be divisible by --train-workers {args.train_workers}")
    wall_start = time.perf_counter()

    import numpy as np
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    tf.config.threading.set_inter_op_parallelism_threads(args.threads)
    import keras

    from jukebox_tf.prior.config import count_prior_params, get_preset
    from jukebox_tf.prior.labels import make_labels
    from jukebox_tf.prior.prior import build_prior
    from jukebox_tf.prior.task import PriorTask
    from jukebox_tf.sampling.sampler import sample_window
    from jukebox_tf.training import TrainConfig, compiled_step, is_chief, strategy_from_env

    xla = not args.no_xla
    quick = args.quick
    load_before = load_average()
    # Label conditioning on, as train-prior turns it on from a codes dataset.
    config = dataclasses.replace(get_preset(args.preset), labels=True, artist_bins=8,
                                 genre_bins=8, sample_rate=22050, max_duration=600.0)
    n_ctx, batch = config.n_ctx, args.batch_size
    hop = 128  # audio samples per top-level token: only the timing labels depend on it
    rng = np.random.RandomState(0)
    labels = np.stack([make_labels(300 * 22050, i * n_ctx * hop, n_ctx * hop, 1 + i % 7,
                                   [1 + i % 5], config.max_genre_words)
                       for i in range(max(batch, 4))])
    batch_data = {"codes": rng.randint(0, config.l_bins, (batch, n_ctx)).astype(np.int32),
                  "mask": np.ones((batch, n_ctx), np.float32), "labels": labels[:batch]}

    class Synthetic(PriorTask):  # step time does not depend on what the codes are
        def dataset(self, input_context, seed):
            rows = batch // input_context.num_input_pipelines  # this worker's part
            return tf.data.Dataset.from_tensors(
                {k: v[:rows] for k, v in batch_data.items()}).repeat()

    # -- training ----------------------------------------------------------------------------
    worker_rss = None
    if args.train_workers > 1 and not args.train_worker:
        first_step, step_s, worker_rss = train_in_workers(args)
        model = None
    else:
        strategy = strategy_from_env()  # first: a worker's collectives need a fresh TF
        task = Synthetic(config, None, batch, codes_info={"hop_lengths": [hop] * config.levels})
        step, iterator, model = compiled_step(task, TrainConfig(
            steps=10**6, global_batch_size=batch, warmup_steps=0,
            mixed_precision=args.mixed_precision), strategy)
        first_step, step_s = timed(lambda: step(iterator, False)[0]["loss"].numpy(),
                                   2 if quick else 10)
        del step, iterator
        if args.train_worker:
            if is_chief(strategy):
                write_result(args.json, {"train_step_s_median": step_s,
                                         "train_step_first_call_s": first_step,
                                         "peak_rss_mb": peak_rss_mb()}, announce=False)
            return 0
    train_tps = batch * n_ctx / step_s
    print(f"train step: {step_s:.3f} s median ({batch} x {n_ctx} tokens"
          f"{f', {args.train_workers} workers' if args.train_workers > 1 else ''}) = "
          f"{train_tps:,.0f} tokens/s, first call {first_step:.1f} s", flush=True)

    # -- sampling: the cached compiled loop ------------------------------------------------
    # The trained-on weights, or fresh ones after --train-workers (the time does not depend
    # on them).
    if model is None:
        keras.utils.set_random_seed(0)
        prior = build_prior(config)
    else:
        prior = (precision_copy(model, lambda: build_prior(config)) if args.mixed_precision
                 else model)
    params = int(sum(np.prod(v.shape) for v in prior.trainable_variables))
    n_new = args.new_tokens
    sampling = {}
    for b in (1, 4):
        cond = prior.conditioning({"labels": labels[:b]})
        prime = np.zeros([b, 0], np.int32)
        first, sample_s = timed(
            lambda: sample_window(prior, cond, prime, n_new, seed=0, jit_compile=xla),
            3 if quick else 7)
        sampling[b] = {"tokens_per_s": b * n_new / sample_s, "ms_per_step": sample_s / n_new
                       * 1e3, "seconds": sample_s, "first_call_s": first}
        print(f"sampling {n_new} tokens x {b}: {sample_s:.3f} s median = "
              f"{b * n_new / sample_s:,.0f} tokens/s ({sample_s / n_new * 1e3:.3f} ms/step), "
              f"first call {first:.1f} s", flush=True)
    no_xla = None
    if xla and not quick:  # the same loop without XLA, for comparison
        cond = prior.conditioning({"labels": labels[:1]})
        prime = np.zeros([1, 0], np.int32)
        first, sample_s = timed(
            lambda: sample_window(prior, cond, prime, n_new, seed=0, jit_compile=False), 3)
        no_xla = {"tokens_per_s": n_new / sample_s, "ms_per_step": sample_s / n_new * 1e3,
                  "first_call_s": first}
        print(f"sampling {n_new} tokens x 1 without XLA: {n_new / sample_s:,.0f} tokens/s "
              f"({sample_s / n_new * 1e3:.3f} ms/step)", flush=True)

    # -- scaling with the context length -----------------------------------------------------
    scaling = {}
    for ctx in [int(c) for c in args.scaling_ctx.split(",") if c]:
        scaled = dataclasses.replace(config, n_ctx=ctx, blocks=ctx // BLOCK_CTX)
        if ctx == n_ctx and scaled == config:
            scaled_prior = prior
        else:
            keras.utils.set_random_seed(0)
            scaled_prior = build_prior(scaled)
        cond = scaled_prior.conditioning({"labels": labels[:1]})
        # Cached: the whole window (quick: its first 256 tokens, extrapolated; a cached step's
        # cost does not depend on its position: every kind reads a fixed-size window).
        cached_n = min(ctx, 256) if quick else ctx
        empty = np.zeros([1, 0], np.int32)
        first, cached_s = timed(lambda: sample_window(scaled_prior, cond, empty, cached_n,
                                                      seed=0, jit_compile=xla), 1)
        # Naive: each token is one full forward pass over the window; time a few.
        naive_n = max(1, min(ctx, (16 if quick else 128) * 512 // ctx))
        prime = np.zeros([1, ctx - naive_n], np.int32)
        naive_first, naive_s = timed(lambda: sample_window(
            scaled_prior, cond, prime, naive_n, seed=0, jit_compile=xla, naive=True), 1)
        scaling[str(ctx)] = {
            "cached_s": cached_s * ctx / cached_n, "naive_s": naive_s * ctx / naive_n,
            "cached_tokens_timed": cached_n, "naive_tokens_timed": naive_n,
            "cached_extrapolated": cached_n < ctx, "naive_extrapolated": naive_n < ctx,
            "cached_ms_per_token": cached_s / cached_n * 1e3,
            "naive_ms_per_token": naive_s / naive_n * 1e3,
            "cached_first_call_s": first, "naive_first_call_s": naive_first,
            "blocks": ctx // BLOCK_CTX}
        row = scaling[str(ctx)]
        print(f"n_ctx {ctx}: cached {row['cached_s']:.2f} s, naive {row['naive_s']:.1f} s "
              f"for the whole window (naive timed on {naive_n} tokens"
              f"{', cached on ' + str(cached_n) if cached_n < ctx else ''}, extrapolated)",
              flush=True)
        if scaled_prior is not prior:
            del scaled_prior

    result = {
        "preset": args.preset, "threads": args.threads, "quick": quick,
        "batch_size": batch, "n_ctx": n_ctx, "new_tokens": n_new, "labels": True,
        "xla": xla, "sampler": "cached compiled loop: one tf.function, tf.while_loop over "
                               "tokens, jit_compile=" + str(xla),
        # The step's precision: float32 unless --mixed-precision (bfloat16 runs its matrix
        # products on AMX or AVX-512 BF16: 1.5-1.6x float32's tokens/s on the hosts measured).
        "train_precision": args.mixed_precision or "float32",
        "train_workers": args.train_workers,
        "train_tokens_per_s": train_tps, "train_step_s_median": step_s,
        "train_step_first_call_s": first_step,
        "sample_tokens_per_s_1": sampling[1]["tokens_per_s"],
        "sample_tokens_per_s_4": sampling[4]["tokens_per_s"],
        "sample_ms_per_step_1": sampling[1]["ms_per_step"],
        "sample_ms_per_step_4": sampling[4]["ms_per_step"],
        "sample_first_call_s": {"1": sampling[1]["first_call_s"],
                                "4": sampling[4]["first_call_s"]},
        "sample_no_xla_1": no_xla,
        "scaling": scaling,
        "scaling_note": ("seconds to sample one whole window of n_ctx tokens, batch 1, "
                         f"blocks = n_ctx / {BLOCK_CTX}; naive = one uncached full forward "
                         "pass per token, timed on naive_tokens_timed tokens and "
                         "extrapolated linearly (every token costs the same pass)"),
        "peak_rss_mb": peak_rss_mb(),  # with --train-workers: this process (sampling) only
        "train_worker_peak_rss_mb": worker_rss,  # the chief worker's, with --train-workers
        "params": params,
        "params_expected": count_prior_params(config),
        "pytorch_reference": PYTORCH,
        "speedup_vs_pytorch": {
            "train": train_tps / PYTORCH["train_tokens_per_s"],
            "sample_1": sampling[1]["tokens_per_s"] / PYTORCH["sample_tokens_per_s_1"],
            "sample_4": sampling[4]["tokens_per_s"] / PYTORCH["sample_tokens_per_s_4"]},
        "load_average": {"start": load_before, "end": load_average()},
        "wall_s": time.perf_counter() - wall_start,
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                    "python": sys.version.split()[0], "tensorflow": tf.__version__},
    }
    speed = result["speedup_vs_pytorch"]
    result["meets_targets"] = {"train": speed["train"] >= TARGET["train_tokens_per_s"],
                               "sample_1": speed["sample_1"] >= TARGET["sample_tokens_per_s_1"],
                               "sample_4": speed["sample_4"] >= TARGET["sample_tokens_per_s_4"]}
    workers = f", {args.train_workers} workers" if args.train_workers > 1 else ""
    rows = [(f"train tokens/s (batch 4, {result['train_precision']}{workers})", train_tps,
             PYTORCH["train_tokens_per_s"], TARGET["train_tokens_per_s"]),
            ("sampled tokens/s, 1 sample", sampling[1]["tokens_per_s"],
             PYTORCH["sample_tokens_per_s_1"], TARGET["sample_tokens_per_s_1"]),
            ("  ms per step, 1 sample", sampling[1]["ms_per_step"],
             PYTORCH["sample_ms_per_step_1"], None),
            ("sampled tokens/s, 4 samples", sampling[4]["tokens_per_s"],
             PYTORCH["sample_tokens_per_s_4"], TARGET["sample_tokens_per_s_4"])]
    print(f"\n{'figure':48} {'jukebox-tf':>11} {'PyTorch ref':>12} {'target':>10} {'met':>4}")
    for name, value, ref, factor in rows:
        target = "" if factor is None else f">= {factor * ref:,.0f}"
        met = "" if factor is None else ("yes" if value >= factor * ref else "no")
        print(f"{name:48} {value:11,.2f} {ref:12,.2f} {target:>10} {met:>4}")
    print(f"\nsampling with XLA: {xla}; scaling (seconds per whole window, batch 1):")
    print(f"{'n_ctx':>6} {'cached':>9} {'naive':>10}")
    for ctx, row in scaling.items():
        print(f"{ctx:>6} {row['cached_s']:9.2f} {row['naive_s']:10.1f}")
    print(f"peak RSS {result['peak_rss_mb']:.0f} MB, {params:,} parameters, load average "
          f"{load_before} -> {result['load_average']['end']}, {result['wall_s']:.0f} s")
    write_result(args.json, result)  # the targets are in the JSON; the exit status stays 0
    return 0


def train_in_workers(args) -> tuple[float, float, float]:
    """(first call s, median step s, peak RSS MB) of the chief of `--train-workers` local
    workers."""
    import json
    import tempfile

    from jukebox_tf.training.local_workers import run_local_workers

    per_worker = args.threads // args.train_workers
    with tempfile.TemporaryDirectory(prefix="prior-bench-workers-") as tmp:
        chief_json = os.path.join(tmp, "chief.json")
        argv = sys.argv[1:] + ["--train-worker", "--json", chief_json,
                               "--threads", str(per_worker)]
        code = run_local_workers(argv, args.train_workers, tmp, threads=per_worker,
                                 program=[sys.executable, os.path.abspath(__file__)])
        if code:
            raise SystemExit(f"a training worker failed (exit {code})")
        with open(chief_json) as f:
            timing = json.load(f)
    return (timing["train_step_first_call_s"], timing["train_step_s_median"],
            timing["peak_rss_mb"])


if __name__ == "__main__":
    sys.exit(main())
