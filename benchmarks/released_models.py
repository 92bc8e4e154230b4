"""The released priors' architectures with random weights: logits parity with transformers'
Jukebox, greedy sampling speed with and without XLA, and peak memory, beside the reference's own
sampling on the same device in the same run.

    python benchmarks/released_models.py --json PATH [--layouts 1b_lyrics upsampler_0]
        [--depth N] [--n-ctx N] [--small] [--tokens 64] [--batch 1] [--repeats 3]
        [--threads N] [--tf32] [--atol 1e-4] [--torch-python PY] [--no-reference]
        [--work DIR] [--keep]

Layouts: 1b_lyrics (the released 1B lyrics top prior: width 2048, 72 layers, 2 heads, 64
blocks, 6144 music tokens after a 384-character lyric prefix in one transformer), upsampler_0
and upsampler_1 (width 1920, 72 layers, 1 head, 128 blocks, 8192 tokens, the conditioner on
the level above). --depth and --n-ctx reduce the depth and the context (music tokens);
--small also shrinks the widths, label and lyric sizes to the parity tests' (for tests on a
CPU). For each layout:
  * the reference (unless --no-reference; tests/torch_scripts/hf_sample_bench.py, run with the
    PyTorch reference venv in a subprocess, so torch never loads here) writes a transformers
    JukeboxPrior of the layout with random weights (save_pretrained), its logits on random
    inputs, and times its own greedy sampling (JukeboxPrior.sample, top_k=1) on CUDA when its
    torch has it, else on the CPU;
  * the checkpoint is imported (`import_weights("hf", ...)`, as `jukebox-tf import-weights`)
    and loaded as `jukebox-tf sample` loads a run (with --no-reference: a model built from the
    preset with its own random initialisation, and no parity);
  * parity: max |ours - reference| over the teacher-forced logits of the same inputs (1b_lyrics:
    also the whole sequence's logits over the whole vocabulary) and the bits per token;
  * sampling: --tokens new tokens per row greedily (temperature 0) through `sample_level`, the
    path `jukebox-tf sample` takes, in one window from an empty prime: without XLA
    (tf.function) and with XLA (jit_compile=True). What is timed is one whole call: the
    window's conditioning, the prime (none for an upsampler's empty prime; 1b_lyrics primes
    its lyric prefix by one pass over the blocks that hold it, under XLA over the whole
    window buffer, prefix and n_ctx positions), the per-token loop, and the codes back on
    the host; the reference's timed call does the same work its way (1b_lyrics: a pass over
    the prefix alone). tokens/s =
    batch x tokens / the median of --repeats calls after one warm-up call (reported apart:
    tracing, XLA compilation). Calls drawing one token cost the rest (conditioning, prime,
    transfers): loop_tokens_per_s = batch x (tokens - 1) / (the median call - the median
    one-token call) is the token loop's own speed. Whether the greedy tokens equal the
    reference's, and each other's;
  * peak memory while sampling: on a GPU the allocator's peak (TensorFlow's
    get_memory_info("GPU:0")["peak"], torch.cuda.max_memory_allocated), on the CPU the
    process's VmHWM (peak RSS; before each phase glibc's malloc_trim returns the heap freed
    so far and /proc/self/clear_refs resets the mark), both with the model's weights resident.
Each layout runs in a process of its own (this script again), so that its peak RSS holds
nothing of the layout before; the JSON is rewritten after each. meets_targets (and the exit
status) says whether each layout's logits are within --atol and its greedy tokens equal the
reference's in both modes.
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import json
import os
import platform
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

from bench_common import peak_rss_mb, write_result
from import_memory import torch_python

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(REPO, "tests", "torch_scripts", "hf_sample_bench.py")
HOPS = (8, 32, 128)  # the released VQ-VAE's audio samples per code, per level
TOTAL_LENGTH = 200 * 44100  # the labels' track length: a 200-second song
# name -> (the preset, the import's --model)
LAYOUTS = {"1b_lyrics": ("paper_1b_lyrics", "1b_lyrics"),
           "upsampler_0": ("paper_upsampler", "upsamplers"),
           "upsampler_1": ("paper_upsampler_level_1", "upsamplers")}
# --small: the sizes of tests/test_import_priors.py's small layouts.
SMALL = dict(width=64, blocks=16, artist_bins=40, genre_bins=12, cond_width=32, cond_depth=9,
             n_lyric_tokens=32)
SMALL_N_CTX = 256
MB = 2 ** 20


def layout_spec(name: str, depth: int | None, n_ctx: int | None, small: bool) -> dict:
    """hf_sample_bench.py's SPEC of a layout: the preset's sizes but for the overrides."""
    from jukebox_tf.prior.config import PRESETS

    config = PRESETS[LAYOUTS[name][0]]
    spec = dict(layout="upsampler" if config.is_upsampler else "1b_lyrics", level=config.level,
                width=config.width, depth=config.depth, heads=config.heads, n_ctx=config.n_ctx,
                blocks=config.blocks, artist_bins=config.artist_bins,
                genre_bins=config.genre_bins)
    if config.is_upsampler:
        spec.update(cond_width=config.cond_width, cond_depth=config.cond_depth)
    else:
        spec.update(n_lyric_tokens=config.n_lyric_tokens)
    if small:
        spec.update({k: v for k, v in SMALL.items() if k in spec}, n_ctx=SMALL_N_CTX)
    spec.update({k: v for k, v in (("depth", depth), ("n_ctx", n_ctx)) if v})
    ctx = spec["n_ctx"] + spec.get("n_lyric_tokens", 0)  # one transformer over both
    if ctx % spec["blocks"]:
        raise SystemExit(f"{name}: the context ({ctx} tokens) is not a multiple of its "
                         f"{spec['blocks']} blocks: choose another --n-ctx")
    if config.is_upsampler and spec["n_ctx"] % config.hop_ratio:
        raise SystemExit(f"{name}: --n-ctx must be a multiple of {config.hop_ratio}")
    if not config.is_upsampler and spec["depth"] < 16:
        # attn_order 12's first prime-attention layer (the one reading the lyric prefix) is
        # layer 15: shallower, the model has no layer that reads the lyrics.
        raise SystemExit(f"{name}: --depth must be at least 16")
    return spec


def our_config(name: str, spec: dict):
    """The PriorConfig of a spec without a checkpoint to import (--no-reference)."""
    from jukebox_tf.prior.config import PRESETS

    preset = PRESETS[LAYOUTS[name][0]]
    fields = {k: spec[k] for k in ("width", "depth", "heads", "n_ctx", "blocks", "artist_bins",
                                   "genre_bins", "cond_width", "cond_depth") if k in spec}
    if "n_lyric_tokens" in spec:
        fields.update(n_lyric_tokens=spec["n_lyric_tokens"], prime_len=spec["n_lyric_tokens"])
    if preset.alignment_layer is not None and preset.alignment_layer >= spec["depth"]:
        fields["alignment_layer"] = None  # the released layer is cut off: the last lyric one
    return dataclasses.replace(preset, **fields)


def make_inputs(spec: dict, batch: int) -> dict:
    """Random inputs for both sides: codes for the logits, the labels of the window at token
    0, the codes of the level above (upsamplers), the whole song's lyrics (1b_lyrics)."""
    rng = np.random.RandomState(1)
    n_ctx, single = spec["n_ctx"], spec["layout"] == "1b_lyrics"
    words = 1 if single else 5
    rows = []
    for i in range(batch):
        genres = list(rng.randint(0, spec["genre_bins"], 1 + i % words))
        rows.append([TOTAL_LENGTH, 0, n_ctx * HOPS[spec["level"]],
                     int(rng.randint(0, spec["artist_bins"])),
                     *genres, *[-1] * (words - len(genres))])
    inputs = dict(codes=rng.randint(0, 2048, (batch, n_ctx)), labels=np.array(rows, np.int64),
                  total_length=np.int64(TOTAL_LENGTH))
    if single:
        inputs["full_lyrics"] = rng.randint(1, 79, 3000)  # 79: the 1B model's characters
    else:
        inputs["upper_codes"] = rng.randint(0, 2048, (batch, n_ctx // 4))
    return inputs


def run_reference(python: str, spec: dict, inputs_path: str, out: str) -> dict:
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_VERBOSITY="error", TQDM_DISABLE="1")
    start = time.perf_counter()
    proc = subprocess.run([python, SCRIPT, json.dumps(spec), inputs_path, out],
                          capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        raise SystemExit(f"{SCRIPT} failed (exit {proc.returncode}):\n{proc.stdout[-2000:]}\n"
                         f"{proc.stderr[-4000:]}")
    with open(os.path.join(out, "reference.json")) as f:
        info = json.load(f)
    info["wall_s"] = time.perf_counter() - start
    return info


def malloc_trim():
    """glibc's malloc_trim, or None. Before a phase, it hands the heap that earlier phases
    freed back to the system, so that the phase's peak RSS counts what is alive and what the
    phase allocates."""
    try:
        import ctypes

        return ctypes.CDLL("libc.so.6").malloc_trim
    except (OSError, AttributeError):
        return None


class Memory:
    """Peak memory of a phase: the GPU allocator's when TensorFlow has a GPU, else VmHWM."""

    def __init__(self, tf):
        self.tf = tf
        self.gpu = bool(tf.config.list_logical_devices("GPU"))
        self.kind = ('tf.config.experimental.get_memory_info("GPU:0")["peak"]' if self.gpu
                     else "VmHWM after malloc_trim")
        self.trim = malloc_trim()

    def reset(self) -> bool:
        if self.gpu:
            self.tf.config.experimental.reset_memory_stats("GPU:0")
            return True
        if self.trim:
            self.trim(0)
        try:  # 5: reset the peak RSS to the current RSS (Linux 4.0+)
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")
            return True
        except OSError:
            self.kind = "VmHWM of the whole process (clear_refs refused)"
            self.trim = None
            return False

    def peak_mb(self) -> float:
        if self.gpu:
            return self.tf.config.experimental.get_memory_info("GPU:0")["peak"] / MB
        return peak_rss_mb()

    def current_mb(self) -> float:
        if self.gpu:
            return self.tf.config.experimental.get_memory_info("GPU:0")["current"] / MB
        with open("/proc/self/status") as f:
            return int(re.search(r"VmRSS:\s+(\d+)", f.read()).group(1)) / 1024


def first_difference(a: np.ndarray, b: np.ndarray) -> int | None:
    """The first token position where any row differs, None when a equals b."""
    if a.shape != b.shape:
        return 0
    columns = np.nonzero((a != b).any(axis=0))[0]
    return int(columns[0]) if len(columns) else None


def parity(prior, ref: dict) -> dict:
    """Teacher-forced logits on the reference's inputs against the reference's."""
    x = {"codes": ref["codes"].astype(np.int32), "labels": ref["labels"].astype(np.int32)}
    if prior.config.is_upsampler:
        x["upper_codes"] = ref["upper_codes"][:, :prior.config.n_ctx // prior.config.hop_ratio]
    if "lyrics" in ref:
        x["lyrics"] = ref["lyrics"].astype(np.int32)
    start = time.perf_counter()
    out = prior(x)
    logits = out["logits"].numpy()
    result = {"forward_s": time.perf_counter() - start,
              "max_abs_logits": float(np.abs(logits - ref["logits"]).max()),
              "logit_std": float(ref["logits"].std()),
              "bits_per_token_diff": abs(float(out["metrics"]["bits_per_token"])
                                         - float(ref["bits_per_token"]))}
    if "sequence_logits" in ref:
        result["max_abs_sequence_logits"] = float(
            np.abs(out["sequence_logits"].numpy() - ref["sequence_logits"]).max())
    return result


def sample_timed(prior, inputs: dict, tokens: int, xla: bool, repeats: int,
                 memory: Memory) -> dict:
    from jukebox_tf.sampling.windowed import sample_level

    config = prior.config
    lyrics = None
    if "full_lyrics" in inputs:
        full = np.tile(inputs["full_lyrics"], (len(inputs["labels"]), 1)).astype(np.int32)
        lyrics = (full, np.full(len(full), full.shape[1], np.int32))

    def call(n=tokens):
        return sample_level(prior, n, HOPS, labels=inputs["labels"].astype(np.int32),
                            lyrics=lyrics, upper_codes=inputs.get("upper_codes"),
                            temperature=0.0, jit_compile=xla, level=config.level,
                            progress=False)

    memory.reset()
    start_mb = memory.current_mb()
    start = time.perf_counter()
    first = call()
    first_s = time.perf_counter() - start
    first_peak = memory.peak_mb()
    memory.reset()
    times, same = [], True
    for _ in range(repeats):
        start = time.perf_counter()
        codes = call()
        times.append(time.perf_counter() - start)
        same &= bool(np.array_equal(codes, first))
    median = statistics.median(times) if times else first_s
    peak = memory.peak_mb() if times else first_peak
    # Calls drawing one token cost what a call costs besides its token loop (conditioning,
    # prime, transfers): the difference gives the loop's own speed.
    ones = []
    for _ in range(max(repeats, 1)):
        start = time.perf_counter()
        call(1)
        ones.append(time.perf_counter() - start)
    one = statistics.median(ones)
    loop = median - one
    return {"codes": first, "first_call_s": first_s, "seconds_median": median,
            "seconds_all": times, "tokens_per_s": first.size / median,
            "one_token_call_s": one,
            "loop_ms_per_token": loop / (tokens - 1) * 1e3 if tokens > 1 else None,
            "loop_tokens_per_s": len(first) * (tokens - 1) / loop
            if tokens > 1 and loop > 0 else None,
            "deterministic": same, "memory_at_start_mb": start_mb,
            "peak_mb_first_call": first_peak, "peak_mb": peak}


def bench_layout(name: str, spec: dict, args, python: str | None, work: str, tf,
                 memory: Memory) -> dict:
    from jukebox_tf.prior.prior import build_prior
    from jukebox_tf.prior.task import load_prior_run
    from jukebox_tf.released.importer import import_weights

    out = os.path.join(work, name)
    os.makedirs(out, exist_ok=True)
    inputs = make_inputs(spec, args.batch)
    inputs_path = os.path.join(out, "inputs.npz")
    np.savez(inputs_path, **inputs)
    result = {"spec": spec}
    ref = None
    if python:
        print(f"{name}: the reference writes the checkpoint, its logits and times its "
              f"sampling", flush=True)
        result["reference"] = run_reference(
            python, dict(spec, tokens=args.tokens, repeats=args.repeats, tf32=args.tf32,
                         threads=args.threads),
            inputs_path, out)
        ref = {**inputs, **dict(np.load(os.path.join(out, "reference.npz")))}
        start = time.perf_counter()
        [run] = import_weights("hf", LAYOUTS[name][1], [os.path.join(out, "model")],
                               os.path.join(out, "runs"), progress=lambda message: None)
        result["import_s"] = time.perf_counter() - start
        if not args.keep:  # the next layout's checkpoint needs the disk
            shutil.rmtree(os.path.join(out, "model"), ignore_errors=True)
    memory.reset()
    before = memory.current_mb()
    start = time.perf_counter()
    prior = load_prior_run(run) if python else build_prior(our_config(name, spec))
    result.update(load_s=time.perf_counter() - start, memory_before_load_mb=before,
                  memory_after_load_mb=memory.current_mb(), peak_mb_load=memory.peak_mb(),
                  params=int(sum(np.prod(w.shape) for w in prior.weights)))
    memory.reset()
    result["memory_after_load_trimmed_mb"] = memory.current_mb()
    print(f"{name}: {result['params']:,} parameters loaded in {result['load_s']:.1f} s",
          flush=True)
    if ref is not None:
        result["parity"] = parity(prior, ref)
        p = result["parity"]
        print(f"{name}: max |logits - reference| {p['max_abs_logits']:.2e}"
              + (f", sequence {p['max_abs_sequence_logits']:.2e}"
                 if "max_abs_sequence_logits" in p else ""), flush=True)
    sampling = {}
    for mode, xla in (("graph", False), ("xla", True)):
        s = sample_timed(prior, inputs, args.tokens, xla, args.repeats, memory)
        codes = s.pop("codes")
        if ref is not None:
            s["first_difference"] = first_difference(codes, ref["sampled"])
            s["tokens_equal_reference"] = s["first_difference"] is None
        sampling[mode] = s
        print(f"{name}: sampling {mode}: {s['tokens_per_s']:,.1f} tokens/s "
              f"({s['seconds_median']:.3f} s median, first call {s['first_call_s']:.1f} s, "
              f"one-token call {s['one_token_call_s']:.3f} s), peak {s['peak_mb']:,.0f} MB"
              + ("" if ref is None else f", equal to the reference: "
                 f"{s['tokens_equal_reference']}"), flush=True)
    result["sampling"] = sampling
    if ref is not None:
        p, tol = result["parity"], args.atol
        result["meets_targets"] = {
            "logits_within_atol": p["max_abs_logits"] <= tol
            and p.get("max_abs_sequence_logits", 0.0) <= tol,
            **{f"greedy_equal_{mode}": s["tokens_equal_reference"]
               for mode, s in sampling.items()}}
    del prior
    gc.collect()
    tf.keras.backend.clear_session()
    return result


def device_names(tf) -> dict:
    devices = []
    for d in tf.config.list_physical_devices():
        details = {}
        if d.device_type == "GPU":
            details = tf.config.experimental.get_device_details(d)
        devices.append({"name": d.name, "type": d.device_type,
                        "device_name": details.get("device_name"),
                        "compute_capability": details.get("compute_capability")})
    return {"tensorflow": tf.__version__, "devices": devices}


def table(results: dict) -> None:
    """tokens/s of whole calls and of the token loop alone, the one-token and first calls'
    seconds, the peak memory and what sampling added to the memory at its start."""
    print(f"\n{'layout':<12} {'params':>13} {'max|dlogit|':>11} {'mode':>9} {'tokens/s':>9} "
          f"{'loop t/s':>9} {'1-tok s':>8} {'first s':>8} {'peak MB':>8} {'+MB':>6} "
          f"{'= ref':>6}")
    for name, r in results.items():
        p = r.get("parity", {})
        diff = max(p.get("max_abs_logits", 0.0), p.get("max_abs_sequence_logits", 0.0))
        rows = [(mode, s["tokens_per_s"], s["loop_tokens_per_s"], s["one_token_call_s"],
                 s["first_call_s"], s["peak_mb"], s["peak_mb"] - s["memory_at_start_mb"],
                 s.get("tokens_equal_reference", "")) for mode, s in r["sampling"].items()]
        if "reference" in r:
            ref = r["reference"]
            rows.append((f"ref {ref['device_type']}", ref["tokens_per_s"],
                         ref["loop_tokens_per_s"], ref["one_token_call_s"],
                         ref["sample_first_call_s"], ref["peak_memory_mb"],
                         ref["peak_memory_mb"] - ref["memory_at_start_mb"], ""))
        for i, (mode, speed, loop, one, first, peak, added, equal) in enumerate(rows):
            head = (f"{name:<12} {r['params']:>13,} "
                    f"{(f'{diff:.2e}' if p else '-'):>11}") if i == 0 else " " * 38
            loop = "-" if loop is None else f"{loop:,.1f}"
            print(f"{head} {mode:>9} {speed:>9,.1f} {loop:>9} {one:>8.3f} {first:>8.1f} "
                  f"{peak:>8,.0f} {added:>6,.0f} {str(equal):>6}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", required=True)
    parser.add_argument("--layouts", nargs="+", choices=tuple(LAYOUTS),
                        default=["1b_lyrics", "upsampler_0"])
    parser.add_argument("--depth", type=int, default=None,
                        help="transformer layers (default: the released 72; 1b_lyrics >= 16)")
    parser.add_argument("--n-ctx", type=int, default=None,
                        help="music tokens per window (default: the released 6144 / 8192)")
    parser.add_argument("--small", action="store_true",
                        help="the parity tests' small widths, labels and lyrics, n_ctx 256 "
                             "unless --n-ctx (for tests on a CPU)")
    parser.add_argument("--tokens", type=int, default=64, help="new tokens per sampling call")
    parser.add_argument("--batch", type=int, default=1, help="rows sampled (and compared)")
    parser.add_argument("--repeats", type=int, default=3, help="timed calls after the warm-up")
    parser.add_argument("--threads", type=int, default=None,
                        help="CPU threads of each framework (default: theirs, all cores)")
    parser.add_argument("--tf32", action="store_true",
                        help="allow TF32 in both frameworks' GPU products (default: off, "
                             "float32 exactly, for the parity)")
    parser.add_argument("--atol", type=float, default=1e-4, help="logits parity tolerance")
    parser.add_argument("--torch-python", default=None,
                        help="the PyTorch reference interpreter (default: as the tests find "
                             "it; on a GPU machine one whose torch has CUDA)")
    parser.add_argument("--no-reference", action="store_true",
                        help="no PyTorch: time our sampling of randomly initialised models")
    parser.add_argument("--work", default=None, help="folder for the checkpoints and runs "
                        "(default: a temp folder, removed at the end)")
    parser.add_argument("--keep", action="store_true", help="keep the checkpoints and runs")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()

    specs = {name: layout_spec(name, args.depth, args.n_ctx, args.small)
             for name in args.layouts}
    for name, spec in specs.items():
        if not 0 < args.tokens <= spec["n_ctx"]:
            raise SystemExit(f"{name}: --tokens must be in [1, n_ctx={spec['n_ctx']}]")
    python = None
    if not args.no_reference:
        python = args.torch_python or torch_python()
        if not os.path.exists(python):
            raise SystemExit(f"the PyTorch reference venv is missing ({python}): run `make "
                             f"torchref`, pass --torch-python, or --no-reference")
    if len(specs) > 1:
        return run_children(args, python)

    import tensorflow as tf

    # Before anything touches a GPU: the reference's process needs room on the same one.
    for gpu in tf.config.list_physical_devices("GPU"):
        tf.config.experimental.set_memory_growth(gpu, True)
    tf.config.experimental.enable_tensor_float_32_execution(args.tf32)
    if args.threads:
        tf.config.threading.set_intra_op_parallelism_threads(args.threads)
        tf.config.threading.set_inter_op_parallelism_threads(args.threads)
    memory = Memory(tf)
    work = tempfile.mkdtemp(prefix="jukebox-released-", dir=args.work)
    [(name, spec)] = specs.items()
    result = dict(common(args, python), memory_kind=memory.kind,
                  machine={"cpus": os.cpu_count(), "platform": platform.platform(),
                           "python": sys.version.split()[0], **device_names(tf)},
                  kept=work if args.keep else None)
    try:
        result["layouts"] = {name: bench_layout(name, spec, args, python, work, tf, memory)}
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    result["meets_targets"] = targets(result["layouts"])
    result["peak_rss_mb_process"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    if not args.child:
        table(result["layouts"])
    return write_result(args.json, result, announce=not args.child)


def common(args, python: str | None) -> dict:
    return {"layouts": {}, "tokens": args.tokens, "batch": args.batch,
            "repeats": args.repeats, "small": args.small, "tf32": args.tf32, "atol": args.atol,
            "threads": args.threads,
            "reference_python": python,
            "timed": "one sample_level call from an empty prime (conditioning, prime, the "
                     "token loop, codes to the host); tokens/s = batch x tokens / median"}


def targets(layouts: dict) -> dict:
    return {f"{name}_{k}": v for name, r in layouts.items()
            for k, v in r.get("meets_targets", {}).items()}


def run_children(args, python: str | None) -> int:
    """Each layout in a process of its own, one after the other, so that one layout's peak
    memory (the RSS on a CPU) holds nothing of the one before; the JSON is written after
    each, so a run cut short by a time limit keeps what it measured."""
    result = common(args, python)
    folder = tempfile.mkdtemp(prefix="jukebox-released-json-")
    try:
        for name in args.layouts:
            path = os.path.join(folder, f"{name}.json")
            argv = [sys.executable, os.path.abspath(__file__), "--child", "--json", path,
                    "--layouts", name, "--tokens", str(args.tokens), "--batch",
                    str(args.batch), "--repeats", str(args.repeats), "--atol", str(args.atol)]
            for flag, value in (("--depth", args.depth), ("--n-ctx", args.n_ctx),
                                ("--threads", args.threads),
                                ("--torch-python", python), ("--work", args.work)):
                if value is not None:
                    argv += [flag, str(value)]
            argv += [flag for flag, on in (("--small", args.small), ("--tf32", args.tf32),
                                           ("--no-reference", python is None),
                                           ("--keep", args.keep)) if on]
            code = subprocess.run(argv).returncode
            if not os.path.exists(path):
                raise SystemExit(f"{name}: the benchmark's process failed (exit {code})")
            with open(path) as f:
                child = json.load(f)
            result["layouts"].update(child["layouts"])
            result.update({k: child[k] for k in ("machine", "memory_kind")})
            result.setdefault("kept", []).append(child["kept"])
            result["meets_targets"] = targets(result["layouts"])
            write_result(args.json, result, announce=False)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    table(result["layouts"])
    return write_result(args.json, result)


if __name__ == "__main__":
    sys.exit(main())
