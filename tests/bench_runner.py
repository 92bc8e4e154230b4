"""Running a benchmarks/ script as its own process, as a user runs it, for the tests that check
its JSON (the figures themselves are for benchmarks/README.md)."""

import json
import os
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_benchmark(script: str, json_path, *args, timeout: int = 900,
                  exit_codes=(0,)) -> tuple[dict, subprocess.CompletedProcess]:
    """Runs benchmarks/<script> --json json_path *args with this interpreter; (the JSON it
    wrote, the finished process). exit_codes: those that pass (a benchmark exits 1 where it
    misses a speed target, which some tests do not judge)."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        p for p in (REPO, os.environ.get("PYTHONPATH")) if p))
    cmd = [sys.executable, os.path.join(REPO, "benchmarks", script), "--json", str(json_path),
           *map(str, args)]
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=timeout)
    assert proc.returncode in exit_codes, proc.stdout[-3000:] + proc.stderr[-3000:]
    with open(json_path) as f:
        return json.load(f), proc
