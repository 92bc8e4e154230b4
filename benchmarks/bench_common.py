"""What every benchmark script shares: peak memory, medians of timed calls, the JSON result.

The scripts run as `python benchmarks/NAME.py`, so this folder is on sys.path.
"""

from __future__ import annotations

import json
import os
import re
import statistics
import time


def peak_rss_mb() -> float:
    """VmHWM of this process (ru_maxrss survives execve; VmHWM does not)."""
    with open("/proc/self/status") as f:
        return int(re.search(r"VmHWM:\s+(\d+)", f.read()).group(1)) / 1024


def timed(fn, repeats: int) -> tuple[float, float]:
    """(first call seconds, median of `repeats` later calls)."""
    start = time.perf_counter()
    fn()
    first = time.perf_counter() - start
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return first, statistics.median(times)


def precision_copy(model, build, precision: str = "float32"):
    """A model from `build()` holding `model`'s weights and computing in `precision`
    ("float32", or "bfloat16" under the mixed_bfloat16 policy): what `jukebox-tf encode`,
    `reconstruct` and `sample` restore from a run (float32 unless given --precision), so that
    inference is timed as they run it, whatever precision the timed training ran in."""
    from jukebox_tf.training import global_dtype_policy
    from jukebox_tf.training.config import precision_policy

    with global_dtype_policy(precision_policy(precision)):
        copy = build()
    copy.set_weights(model.get_weights())
    return copy


def cpu_ticks() -> list[int] | None:
    """The machine's aggregate /proc/stat CPU counters (user, nice, system, idle, iowait, irq,
    softirq, steal, ...); None where there is no /proc/stat."""
    try:
        with open("/proc/stat") as f:
            return [int(x) for x in f.readline().split()[1:]]
    except OSError:
        return None


_START_TICKS = cpu_ticks()  # benchmarks import this module first
STEAL_WARNING_PERCENT = 10.0


def steal_percent(before: list[int] | None, after: list[int] | None) -> float | None:
    """Share of CPU time the hypervisor gave to other guests between two `cpu_ticks()`: wall
    times taken while it is high are not comparable with other runs."""
    if not before or not after or len(before) < 8:
        return None
    total = sum(after) - sum(before)
    return 100.0 * (after[7] - before[7]) / total if total > 0 else None


# The instruction sets the matrix products' speed turns on: the same 2-core task has run on
# Intel hosts with AMX and on AMD hosts with AVX-512 BF16 only, and the prior's figures differ
# 2-4x between them.
MATRIX_ISA = ("amx_bf16", "amx_tile", "avx512_bf16", "avx512_vnni", "avx512f", "avx2")


def cpu_info(path: str = "/proc/cpuinfo") -> dict:
    """{"model": the first processor's model name or None, "matrix_isa": which of MATRIX_ISA
    its flags list}: which kind of host a result came from."""
    try:
        with open(path) as f:
            text = f.read()
    except OSError:
        return {"model": None, "matrix_isa": []}
    model = re.search(r"^model name\s*:\s*(.+)$", text, re.M)
    flags = re.search(r"^flags\s*:\s*(.+)$", text, re.M)
    present = set(flags.group(1).split()) if flags else set()
    return {"model": model.group(1).strip() if model else None,
            "matrix_isa": [isa for isa in MATRIX_ISA if isa in present]}


def write_result(path: str, result: dict, announce: bool = True) -> int:
    """Writes the JSON (temp name, then rename) with the CPU steal since start and the CPU's
    kind (machine.cpu), printing the latter unless not `announce`; exit status 1 when a
    target is missed."""
    steal = steal_percent(_START_TICKS, cpu_ticks())
    cpu = cpu_info()
    result = {**result, "cpu_steal_percent": None if steal is None else round(steal, 1),
              "machine": {**result.get("machine", {}), "cpu": cpu}}
    if announce:
        kind = cpu["model"] or "unknown"
        if cpu["model"] or cpu["matrix_isa"]:  # no /proc/cpuinfo: nothing known of its flags
            kind += f" ({', '.join(cpu['matrix_isa']) or 'no AVX2'})"
        print(f"cpu: {kind}; compare figures only between runs on the same kind", flush=True)
    if steal is not None and steal > STEAL_WARNING_PERCENT:
        print(f"warning: the hypervisor took {steal:.0f}% of the CPU during this run: its "
              f"wall times are not comparable with a quiet run's", flush=True)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(result, f, indent=2)
    os.replace(tmp, path)
    return 0 if all(result.get("meets_targets", {}).values()) else 1


def build_and_export(root: str, preset: str, rate: int, max_seconds: float = 10.0,
                     model: str = "jukebox") -> dict[str, str]:
    """Untrained runs of `preset` made by the CLI's own commands, exported to
    ROOT/models/<model> (reused if it already has a version): {"base": that base path, and
    the run directories "vqvae", "prior_l2", "prior_l1", "prior_l0"}.

    Demo audio -> ingest at `rate` -> train-vqvae and train-prior with 0 steps (the initial
    weights: the time per token does not depend on them) -> encode -> export, whose serving
    limits allow `generate` requests up to `max_seconds`.
    """
    import contextlib
    import io

    from jukebox_tf.cli import main as jukebox_tf

    path = {name: os.path.join(root, name) for name in (
        "audio", "data", "vqvae", "codes", "prior_l2", "prior_l1", "prior_l0")}
    path["base"] = base = os.path.join(root, "models", model)
    if os.path.isdir(base) and any(v.isdigit() for v in os.listdir(base)):
        return path
    untrained = ["--preset", preset, "--steps", "0", "--quiet"]
    commands = [
        ["make-demo-data", "--artists", "2", "--tracks-per-artist", "1", "--track-seconds",
         "12", path["audio"]],
        ["ingest", path["audio"], path["data"], "--sample-rate", str(rate), "--quiet"],
        ["train-vqvae", "--data", path["data"], "--out", path["vqvae"], *untrained],
        ["encode", "--run", path["vqvae"], "--data", path["data"], "--out", path["codes"],
         "--quiet"],
        *[["train-prior", "--level", str(level), "--codes", path["codes"], "--out",
           path[f"prior_l{level}"], *untrained, *(["--lyrics"] if level == 2 else [])]
          for level in (2, 1, 0)],
        ["export", "--vqvae", path["vqvae"], "--prior", path["prior_l2"], "--upsamplers",
         path["prior_l0"], path["prior_l1"], "--out", base, "--max-seconds",
         str(max_seconds), "--model-name", model, "--quiet"]]
    for argv in commands:
        with contextlib.redirect_stdout(io.StringIO()):
            if jukebox_tf(argv) != 0:
                raise SystemExit(f"jukebox-tf {' '.join(argv)} failed")
    return path
