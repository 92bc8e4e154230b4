"""Running a benchmarks/ script as its own process, as a user runs it, for the tests that check
its JSON (the figures themselves are for benchmarks/README.md)."""

import json
import os
import signal
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
    # A process group of its own, so that a benchmark that overruns goes with the servers and
    # commands it started, rather than leaving them to fill the host's memory.
    with subprocess.Popen(cmd, cwd=REPO, env=env, stdin=subprocess.DEVNULL,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                          start_new_session=True) as running:
        try:
            stdout, stderr = running.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(running.pid, signal.SIGKILL)
            stdout, stderr = running.communicate()
            raise AssertionError(f"benchmarks/{script} ran past {timeout} s:\n"
                                 f"{stdout[-3000:]}{stderr[-3000:]}") from None
    proc = subprocess.CompletedProcess(cmd, running.returncode, stdout, stderr)
    assert proc.returncode in exit_codes, proc.stdout[-3000:] + proc.stderr[-3000:]
    with open(json_path) as f:
        return json.load(f), proc
