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


def write_result(path: str, result: dict) -> int:
    """Writes the JSON (temp name, then rename); exit status 1 when a target is missed."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(result, f, indent=2)
    os.replace(tmp, path)
    return 0 if all(result.get("meets_targets", {}).values()) else 1
