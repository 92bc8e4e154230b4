"""Prior train step side by side with the PyTorch reference (transformers' JukeboxPrior).

    python benchmarks/train_vs_reference.py --json PATH [--pairs 20] [--threads 2]
        [--batch-size 4] [--mixed-precision bfloat16] [--warmup 3] [--pause 1.0]
        [--torch-python PY] [--depth N] [--n-ctx N]

Two persistent worker processes, each limited to --threads CPU threads:
  * ours: this script again (hidden --worker), which builds the step as benchmarks/prior.py
    does: the `small` top-level prior with label conditioning, as train-prior builds it
    (1,552,128 parameters), the compiled step `train-prior` runs (forward, loss, gradients,
    global-norm clipping, Adam, weight EMA) in float32 unless --mixed-precision, on one
    synthetic batch of --batch-size x n_ctx codes with their labels;
  * the reference: tests/torch_scripts/hf_train_step.py in the PyTorch reference venv (torch
    never loads here), a transformers JukeboxPrior of the same configuration (the parameter
    counts must be equal) training on the same batch in float32: forward_tokens' teacher-forced
    loss, backward, clipping, Adam, the EMA.
After --warmup steps in each (the first one, tracing and XLA compilation in ours, reported
apart), --pairs pairs: a --pause, one reference step, a --pause, one step of ours. The pause
matters: without it a process's worker threads still spin from its step while the other's
runs (PyTorch's OpenMP threads longer than TensorFlow's; benchmarks/README.md, "Against the
original, side by side"). Reported: each side's median step and tokens/s (batch x n_ctx / s),
the median over the pairs of (reference time / our time) with its range against the 1.25x
target (meaningful in float32 at full size), and the host: CPU model and flags, oneDNN, the
versions, load average at start and end, CPU steal during the pairs. --depth and --n-ctx shrink
the prior for tests (blocks follow n_ctx, so that a block keeps the preset's 64 tokens).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time

from bench_common import cpu_info, cpu_ticks, steal_percent, write_result
from import_memory import torch_python
from prior import BLOCK_CTX, TARGET, load_average

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REFERENCE = os.path.join(REPO, "tests", "torch_scripts", "hf_train_step.py")
HOP = 128  # audio samples per top-level token: only the timing labels depend on it
FLAGS = ("avx512f", "avx512_bf16", "amx_tile")


def prior_config(args):
    """The benchmarked prior: benchmarks/prior.py's, shrunk by --depth and --n-ctx."""
    from jukebox_tf.prior.config import get_preset

    config = dataclasses.replace(get_preset("small"), labels=True, artist_bins=8,
                                 genre_bins=8, sample_rate=22050, max_duration=600.0)
    n_ctx = args.n_ctx or config.n_ctx
    return dataclasses.replace(config, depth=args.depth or config.depth, n_ctx=n_ctx,
                               blocks=n_ctx // BLOCK_CTX)


def synthetic_batch(config, batch: int) -> dict:
    """benchmarks/prior.py's batch: random codes, every position real, label rows of four
    windows of a 300-second song (the step's time does not depend on the codes)."""
    import numpy as np

    from jukebox_tf.prior.labels import make_labels

    n_ctx = config.n_ctx
    labels = np.stack([make_labels(300 * 22050, i * n_ctx * HOP, n_ctx * HOP, 1 + i % 7,
                                   [1 + i % 5], config.max_genre_words)
                       for i in range(max(batch, 4))])
    codes = np.random.RandomState(0).randint(0, config.l_bins, (batch, n_ctx)).astype(np.int32)
    return {"codes": codes, "mask": np.ones((batch, n_ctx), np.float32),
            "labels": labels[:batch]}


def serve_ours(args) -> int:
    """Our worker (--worker BATCH_NPZ): writes the batch there for the reference, then
    answers the driver's commands as tests/torch_scripts/hf_train_step.py does."""
    # The replies go to the real stdout; whatever else writes to fd 1 lands on stderr.
    replies = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)
    import numpy as np
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    tf.config.threading.set_inter_op_parallelism_threads(args.threads)
    from tensorflow.python.util import _pywrap_util_port

    from jukebox_tf.prior.config import count_prior_params
    from jukebox_tf.prior.task import PriorTask
    from jukebox_tf.training import TrainConfig, compiled_step, strategy_from_env

    strategy = strategy_from_env()  # first, as in benchmarks/prior.py
    config, batch = prior_config(args), args.batch_size
    data = synthetic_batch(config, batch)
    np.savez(args.worker, codes=data["codes"], labels=data["labels"])

    class Synthetic(PriorTask):
        def dataset(self, input_context, seed):
            return tf.data.Dataset.from_tensors(data).repeat()

    train = TrainConfig(steps=10**6, global_batch_size=batch, warmup_steps=0,
                        mixed_precision=args.mixed_precision)
    task = Synthetic(config, None, batch, codes_info={"hop_lengths": [HOP] * config.levels})
    step, iterator, model = compiled_step(task, train, strategy)
    print(json.dumps({
        "params": model.count_params(), "params_expected": count_prior_params(config),
        "config": config.to_dict(), "tensorflow": tf.__version__,
        "onednn": bool(_pywrap_util_port.IsMklEnabled()),
        "learning_rate": train.learning_rate, "clip_norm": train.clip_norm,
        "ema_decay": train.ema_decay}), file=replies)
    for line in iter(sys.stdin.readline, ""):
        if line.strip() == "quit":
            break
        start = time.perf_counter()
        loss = float(step(iterator, False)[0]["loss"].numpy())
        print(json.dumps({"step_s": time.perf_counter() - start, "loss": loss}), file=replies)
    return 0


class Worker:
    """A persistent worker process: one command per line on its stdin, one JSON line back;
    its stderr goes to a log file, whose end is shown if it stops."""

    def __init__(self, name: str, argv: list[str], log_dir: str, env: dict | None = None):
        self.name, self.log_path = name, os.path.join(log_dir, f"{name}.log")
        self.started = time.perf_counter()
        with open(self.log_path, "w") as log:
            self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                         stderr=log, text=True, env=env, cwd=REPO)

    def reply(self) -> dict:
        line = self.proc.stdout.readline()
        if not line:
            code = self.proc.wait()
            with open(self.log_path) as f:
                tail = f.read()[-4000:]
            raise SystemExit(f"the {self.name} worker stopped (exit {code}); its log ends:\n"
                             f"{tail}")
        return json.loads(line)

    def step(self) -> dict:
        self.proc.stdin.write("step\n")
        self.proc.stdin.flush()
        return self.reply()

    def close(self):
        if self.proc.poll() is None:
            try:
                self.proc.stdin.write("quit\n")
                self.proc.stdin.flush()
                self.proc.wait(timeout=60)
            except (OSError, subprocess.TimeoutExpired):
                self.proc.kill()
                self.proc.wait()


def warm_up(worker: Worker, steps: int) -> list[float]:
    times = [worker.step()["step_s"] for _ in range(steps)]
    print(f"{worker.name}: first step {times[0]:.2f} s, warm-up "
          f"{', '.join(f'{t:.3f}' for t in times[1:]) or '-'} s", flush=True)
    return times


def side(name: str, warmup: list[float], steps: list[dict], tokens: int, **extra) -> dict:
    seconds = [s["step_s"] for s in steps]
    median = statistics.median(seconds)
    return {"implementation": name, **extra, "first_step_s": warmup[0],
            "warmup_steps_s": warmup[1:], "steps_s": seconds, "step_s_median": median,
            "tokens_per_s": tokens / median, "loss_first": steps[0]["loss"],
            "loss_last": steps[-1]["loss"]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json")
    parser.add_argument("--pairs", type=int, default=20)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--mixed-precision", choices=("float16", "bfloat16"), default=None,
                        help="ours only (the training loop's option); the reference trains in "
                             "float32")
    parser.add_argument("--warmup", type=int, default=3,
                        help="steps before the pairs in each worker, the first one included")
    parser.add_argument("--pause", type=float, default=1.0,
                        help="seconds of idle before every timed step")
    parser.add_argument("--torch-python", default=None,
                        help="the PyTorch reference venv's python (default: "
                             "$JUKEBOX_TORCH_PYTHON, else the venv `make torchref` makes)")
    parser.add_argument("--depth", type=int, default=None, help="fewer layers (tests)")
    parser.add_argument("--n-ctx", type=int, default=None,
                        help=f"a shorter context, a multiple of {BLOCK_CTX} (tests)")
    parser.add_argument("--worker", metavar="BATCH_NPZ", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.n_ctx is not None and (args.n_ctx < BLOCK_CTX or args.n_ctx % BLOCK_CTX):
        parser.error(f"--n-ctx must be a multiple of {BLOCK_CTX} (the preset's block length)")
    if args.worker:
        return serve_ours(args)
    if not args.json or args.pairs < 1 or args.warmup < 1:
        parser.error("--json is required, and --pairs and --warmup must be at least 1")
    python = args.torch_python or torch_python()
    if not os.path.exists(python):
        raise SystemExit(f"the PyTorch reference venv is missing ({python}): run `make "
                         f"torchref`, or pass --torch-python")
    wall_start, load_start = time.perf_counter(), load_average()
    with tempfile.TemporaryDirectory(prefix="train-vs-reference-") as tmp:
        workers = []
        try:
            result = run_pairs(args, python, tmp, workers)
        finally:
            for worker in workers:
                worker.close()
    result.update(load_average={"start": load_start, "end": load_average()},
                  wall_s=time.perf_counter() - wall_start)
    report(result)
    write_result(args.json, result)  # the target is in the JSON; the exit status stays 0
    return 0


def run_pairs(args, python: str, tmp: str, workers: list) -> dict:
    """Starts the two workers (appended to `workers`, for the caller to close), warms them
    up and times the pairs; the result without the load average and wall time."""
    batch_npz = os.path.join(tmp, "batch.npz")
    worker_argv = [sys.executable, os.path.abspath(__file__), "--worker", batch_npz,
                   "--threads", str(args.threads), "--batch-size", str(args.batch_size)]
    for flag in ("mixed_precision", "depth", "n_ctx"):
        if getattr(args, flag) is not None:
            worker_argv += [f"--{flag.replace('_', '-')}", str(getattr(args, flag))]
    # One after the other: neither starts (imports, builds) while the other does.
    workers.append(Worker("ours", worker_argv, tmp))
    ours = workers[-1].reply()
    ours_start_s = time.perf_counter() - workers[-1].started
    config = ours["config"]
    spec = {"config": config, "batch": batch_npz, "threads": args.threads,
            "params_expected": ours["params_expected"], **{
                k: ours[k] for k in ("learning_rate", "clip_norm", "ema_decay")}}
    env = dict(os.environ, CUDA_VISIBLE_DEVICES="", HF_HUB_OFFLINE="1", TQDM_DISABLE="1",
               TRANSFORMERS_VERBOSITY="error", OMP_NUM_THREADS=str(args.threads))
    workers.append(Worker("reference", [python, REFERENCE, json.dumps(spec)], tmp, env))
    ref = workers[-1].reply()
    ref_start_s = time.perf_counter() - workers[-1].started
    print(f"parameters: ours {ours['params']:,} (counted {ours['params_expected']:,}), "
          f"reference {ref['params']:,}", flush=True)
    if not ours["params"] == ours["params_expected"] == ref["params"]:
        raise SystemExit("the parameter counts differ: the two priors are not the same model")
    ours_worker, ref_worker = workers
    ours_warmup = warm_up(ours_worker, args.warmup)
    ref_warmup = warm_up(ref_worker, args.warmup)

    ticks = cpu_ticks()
    ref_steps, ours_steps = [], []
    for i in range(args.pairs):
        time.sleep(args.pause)
        ref_steps.append(ref_worker.step())
        time.sleep(args.pause)
        ours_steps.append(ours_worker.step())
        print(f"pair {i + 1}/{args.pairs}: reference {ref_steps[-1]['step_s']:.3f} s, ours "
              f"{ours_steps[-1]['step_s']:.3f} s", flush=True)
    pairs_steal = steal_percent(ticks, cpu_ticks())

    tokens = args.batch_size * config["n_ctx"]
    ratios = [r["step_s"] / o["step_s"] for r, o in zip(ref_steps, ours_steps)]
    ratio = statistics.median(ratios)
    target = TARGET["train_tokens_per_s"]
    cpu = cpu_info()
    return {
        "preset": "small", "labels": True, "depth": config["depth"], "n_ctx": config["n_ctx"],
        "blocks": config["blocks"], "batch_size": args.batch_size, "tokens_per_step": tokens,
        "threads": args.threads, "pairs": args.pairs, "warmup_steps": args.warmup,
        "pause_s": args.pause,
        "params": ours["params"], "params_expected": ours["params_expected"],
        "params_reference": ref["params"],
        "ours": side("jukebox-tf compiled_step (train-prior's step)", ours_warmup, ours_steps,
                     tokens, precision=args.mixed_precision or "float32",
                     startup_s=ours_start_s),
        "reference": side("transformers JukeboxPrior (tests/torch_scripts/hf_train_step.py)",
                          ref_warmup, ref_steps, tokens, precision="float32",
                          startup_s=ref_start_s, threads=ref["threads"]),
        "ratios": ratios, "ratio_median": ratio, "ratio_min": min(ratios),
        "ratio_max": max(ratios), "ratio_note": "per pair: reference step s / our step s",
        "target_ratio": target,
        # The target is float32 against float32 at the full size.
        "meets_targets": {"train": ratio >= target},
        "pairs_cpu_steal_percent": None if pairs_steal is None else round(pairs_steal, 1),
        "host": {"cpu_model": cpu["model"], **{f: f in cpu["matrix_isa"] for f in FLAGS},
                 "onednn": ours["onednn"],
                 "TF_ENABLE_ONEDNN_OPTS": os.environ.get("TF_ENABLE_ONEDNN_OPTS")},
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                    "python": sys.version.split()[0], "tensorflow": ours["tensorflow"],
                    "torch": ref["torch"], "transformers": ref["transformers"]},
    }


def report(r: dict):
    ours, ref = r["ours"], r["reference"]
    print(f"\nprior train step, depth {r['depth']}, batch {r['batch_size']} x {r['n_ctx']}, "
          f"{r['threads']} threads, {r['pairs']} pairs, {r['pause_s']:g} s pause")
    print(f"{'':24} {'reference (float32)':>20} {'ours (' + ours['precision'] + ')':>20}")
    for name, key, fmt in (("first step (s)", "first_step_s", "{:.2f}"),
                           ("median step (s)", "step_s_median", "{:.3f}"),
                           ("tokens/s", "tokens_per_s", "{:,.0f}"),
                           ("loss first -> last", None, None)):
        if key is None:
            cells = [f"{s['loss_first']:.3f} -> {s['loss_last']:.3f}" for s in (ref, ours)]
        else:
            cells = [fmt.format(s[key]) for s in (ref, ours)]
        print(f"{name:24} {cells[0]:>20} {cells[1]:>20}")
    met = "yes" if r["meets_targets"]["train"] else "no"
    print(f"ours / reference: {r['ratio_median']:.2f}x ({r['ratio_min']:.2f}-"
          f"{r['ratio_max']:.2f}), target >= {r['target_ratio']}x: {met}")
    h, m = r["host"], r["machine"]
    flags = ", ".join(f for f in FLAGS if h[f]) or f"none of {', '.join(FLAGS)}"
    print(f"host: {h['cpu_model']} ({flags}); oneDNN {'on' if h['onednn'] else 'off'} "
          f"(TF_ENABLE_ONEDNN_OPTS={h['TF_ENABLE_ONEDNN_OPTS']}); TensorFlow "
          f"{m['tensorflow']}, torch {m['torch']}, transformers {m['transformers']}")
    print(f"load average {r['load_average']['start']} -> {r['load_average']['end']}, CPU steal "
          f"during the pairs {r['pairs_cpu_steal_percent']}%, parameters {r['params']:,} "
          f"(reference {r['params_reference']:,}), {r['wall_s']:.0f} s")


if __name__ == "__main__":
    sys.exit(main())
