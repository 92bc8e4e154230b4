"""Training on one machine as N worker processes: MultiWorkerMirroredStrategy over localhost.

Why: on a CPU-only host, one TensorFlow process leaves part of its cores idle during an
XLA-compiled step (XLA's CPU runtime runs the step's ops one after another, and its
reductions on one thread). N workers with cores / N threads each keep every core busy; the
only extra work is one all-reduce of the gradients per step. On the `small` prior with 2
cores, two single-threaded workers trained 1.15-1.6x faster than one two-threaded process on
an Intel Sapphire Rapids host, and 1.0-1.1x on an AMD EPYC host (benchmarks/README.md). The
math is the same global batch, split between the workers.

`run_local_workers(argv, n)` starts `python -m jukebox_tf *argv` n times, each with its
own TF_CONFIG (worker 0 is the chief: it writes the checkpoints and TensorBoard logs and prints
to this terminal; the others log to files), forwards SIGINT/SIGTERM once to every worker (so
they stop together after a checkpoint), and stops the rest when one fails (they would wait on
its collectives forever).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import portpicker

from jukebox_tf.errors import JukeboxError

# Seconds the other workers get to exit after one failed, before they are killed.
_GRACE_S = 10.0


def usable_cores() -> int:
    """Cores this process may run on (its affinity mask, which containers and taskset set)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def worker_env(index: int, ports: list[int], threads: int, base: dict | None = None) -> dict:
    """The environment of worker `index`: TF_CONFIG naming every worker, and TensorFlow's
    thread-pool sizes (read by TensorFlow at start-up)."""
    env = dict(os.environ if base is None else base)
    env["TF_CONFIG"] = json.dumps({
        "cluster": {"worker": [f"localhost:{p}" for p in ports]},
        "task": {"type": "worker", "index": index}})
    # Both pools at `threads`: the setting benchmarks/prior.py --train-workers measured.
    env["TF_NUM_INTRAOP_THREADS"] = env["TF_NUM_INTEROP_THREADS"] = str(threads)
    return env


def check_can_spawn(workers: int, global_batch: int) -> None:
    if workers < 1:
        raise JukeboxError(f"--local-workers must be at least 1, not {workers}")
    if os.environ.get("TF_CONFIG"):
        raise JukeboxError("--local-workers makes its own cluster, but TF_CONFIG is set: "
                           "unset TF_CONFIG, or drop --local-workers and start the workers "
                           "yourself")
    if global_batch % workers:
        raise JukeboxError(f"--batch-size {global_batch} is not divisible by the "
                           f"{workers} local workers")


def run_local_workers(argv: list[str], workers: int, log_dir: str,
                      threads: int | None = None, program: list[str] | None = None) -> int:
    """Runs `program *argv` (default `python -m jukebox_tf`) as `workers` processes of one
    cluster; returns 0, or the exit code of the first worker that failed. Worker k > 0 logs
    to log_dir/worker-k.log. threads: each worker's intra- and inter-op threads (default:
    cores / workers)."""
    threads = threads or max(1, usable_cores() // workers)
    program = program or [sys.executable, "-m", "jukebox_tf"]
    ports = [portpicker.pick_unused_port() for _ in range(workers)]
    os.makedirs(log_dir, exist_ok=True)
    logs = [None] + [os.path.join(log_dir, f"worker-{k}.log") for k in range(1, workers)]
    print(f"starting {workers} local workers ({threads} thread{'s' * (threads > 1)} each, "
          f"ports {', '.join(map(str, ports))}); worker 0 prints here, the others log to "
          f"{log_dir}", flush=True)
    procs = []
    files = []
    try:
        for k in range(workers):
            out = None
            if logs[k]:
                out = open(logs[k], "w")
                files.append(out)
            # Own session: a terminal's Ctrl-C reaches only this process, which forwards it
            # exactly once (a second SIGINT makes a worker exit without its checkpoint).
            procs.append(subprocess.Popen(
                [*program, *argv],
                env=worker_env(k, ports, threads), stdout=out,
                stderr=subprocess.STDOUT if out else None, start_new_session=True))
        return _wait(procs, logs)
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
        for f in files:
            f.close()


def _wait(procs: list[subprocess.Popen], logs: list[str | None]) -> int:
    def forward(signum, frame):
        for p in procs:
            if p.poll() is None:
                p.send_signal(signum)

    previous = {s: signal.signal(s, forward) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        while True:
            codes = [p.poll() for p in procs]
            failed = [k for k, c in enumerate(codes) if c not in (None, 0)]
            if failed:
                k = failed[0]
                where = f" (log: {logs[k]})" if logs[k] else ""
                print(f"local worker {k} exited with code {codes[k]}{where}; stopping the "
                      "others", file=sys.stderr, flush=True)
                _stop(procs)
                return codes[k]
            if all(c == 0 for c in codes):
                return 0
            time.sleep(0.2)
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


def _stop(procs: list[subprocess.Popen]) -> None:
    for p in procs:
        if p.poll() is None:
            p.terminate()
    deadline = time.monotonic() + _GRACE_S
    for p in procs:
        try:
            p.wait(timeout=max(deadline - time.monotonic(), 0.1))
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
