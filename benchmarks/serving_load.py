"""Load test of the local model server: concurrent gRPC clients sending mixed requests.

    python benchmarks/serving_load.py --json PATH [--clients 8] [--requests 50]
                                      [--model-config FILE --model NAME] [--signatures A,B]
                                      [--length 16] [--batching-config FILE] [--quick]

It starts `python -m serving` as a subprocess (the toy model of serving/toy_model.py unless
--model-config is given), then `--clients` threads, each on its own channel, send `--requests`
Predicts each, picking a signature at random. Inputs are synthesized from the signatures in
GetModelMetadata (open dimensions: 1 for dimension 0, `--length` for the rest) and kept inside
the model's serving_limits.json ranges. It reports errors, latency percentiles and requests/s
per signature and overall, and the server's RSS after the first 100 requests and after the
last: the targets are zero errors and under 10% growth between the two.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import portpicker  # noqa: E402
from bench_common import write_result  # noqa: E402
import psutil  # noqa: E402

from serving import client  # noqa: E402
from serving.config import load_model_server_config  # noqa: E402
from serving.model_manager import scan_versions  # noqa: E402
from serving.servable import read_model_rules  # noqa: E402
from serving.validation import SignatureSpec  # noqa: E402

RSS_WINDOW = 100  # "first and last 100 requests"


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--json", required=True, help="where to write the results")
    p.add_argument("--clients", type=int, default=8)
    p.add_argument("--requests", type=int, default=50, help="requests per client")
    p.add_argument("--model-config", help="ModelServerConfig (default: the toy model)")
    p.add_argument("--model", help="model name in --model-config (default: its first)")
    p.add_argument("--signatures", help="comma-separated signatures (default: all)")
    p.add_argument("--length", type=int, default=16, help="size of open non-batch dims")
    p.add_argument("--lengths", default="", metavar="INPUT=N,...",
                   help="per-input size of open non-batch dims (e.g. audio=2048)")
    p.add_argument("--batching-config", help="BatchingParameters file for the server")
    p.add_argument("--quick", action="store_true", help="4 clients x 30 requests")
    return p.parse_args(argv)


def toy_config(workdir: str) -> str:
    from serving.toy_model import save_toy_model, write_model_config

    save_toy_model(os.path.join(workdir, "base", "1"))
    return write_model_config(os.path.join(workdir, "models.config"), "toy", "base")


def load_specs(channel, model: str, base_path: str, wanted) -> dict[str, SignatureSpec]:
    """Signature specs from GetModelMetadata plus the newest version's serving limits."""
    versions = scan_versions(base_path)
    rules = read_model_rules(versions[max(versions)]) if versions else {}
    specs = {name: SignatureSpec.from_signature_def(name, sig, rules.get(name))
             for name, sig in client.metadata(channel, model).items()
             if not name.startswith("__")}
    return {k: v for k, v in specs.items() if not wanted or k in wanted}


def synthesize(spec: SignatureSpec, rng, length: int, lengths: dict | None = None
               ) -> dict[str, np.ndarray]:
    """Valid random inputs for a signature; `lengths` overrides `length` per input name."""
    inputs = {}
    for name, inp in spec.inputs.items():
        size = (lengths or {}).get(name, length)
        shape = tuple((1 if axis == 0 else size) if d is None else d
                      for axis, d in enumerate(inp.shape if inp.shape is not None else (1,)))
        if inp.rule.max_dims:
            shape = tuple(min(s, c) if c is not None else s
                          for s, c in zip(shape, inp.rule.max_dims))
        low = inp.rule.min if inp.rule.min is not None else 0
        high = inp.rule.max if inp.rule.max is not None else low + 10
        if inp.dtype.name == "string":
            inputs[name] = np.full(shape, b"benchmark", dtype=object)
            continue
        if inp.dtype.is_integer:
            value = rng.integers(low, high, shape, endpoint=True)
        elif inp.dtype.is_bool:
            value = rng.integers(0, 1, shape, endpoint=True)
        else:
            value = np.clip(rng.standard_normal(shape), inp.rule.min, inp.rule.max) \
                if inp.rule.min is not None or inp.rule.max is not None \
                else rng.standard_normal(shape)
        inputs[name] = value.astype(inp.dtype.as_numpy_dtype)
    return inputs


class Recorder:
    """Collects per-request results and the server's RSS around the first/last window."""

    def __init__(self, server_pid: int, total: int):
        self.proc = psutil.Process(server_pid)
        self.total, self.results, self.lock = total, [], threading.Lock()
        self.rss_first = self.rss_peak = 0

    def add(self, signature, seconds, error):
        with self.lock:
            self.results.append((signature, seconds, error))
            done = len(self.results)
        rss = self.proc.memory_info().rss
        self.rss_peak = max(self.rss_peak, rss)
        if done == min(RSS_WINDOW, self.total):
            self.rss_first = rss


def run_clients(target, model, specs, clients, per_client, length, recorder, lengths=None):
    def worker(seed):
        rng = np.random.default_rng(seed)
        names = sorted(specs)
        with client.connect(target) as channel:
            for _ in range(per_client):
                name = names[rng.integers(len(names))]
                inputs = synthesize(specs[name], rng, length, lengths)
                start = time.perf_counter()
                try:
                    client.predict(channel, model, inputs, signature=name, timeout=600)
                    error = None
                except client.ServingError as e:
                    error = str(e)
                recorder.add(name, time.perf_counter() - start, error)

    threads = [threading.Thread(target=worker, args=(seed,)) for seed in range(clients)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return time.perf_counter() - start


def summarize(results, wall):
    def stats(rows):
        ms = np.array([r[1] for r in rows]) * 1000
        return {"requests": len(rows), "errors": sum(r[2] is not None for r in rows),
                "p50_ms": float(np.percentile(ms, 50)), "p95_ms": float(np.percentile(ms, 95)),
                "p99_ms": float(np.percentile(ms, 99))}

    per_signature = {name: stats([r for r in results if r[0] == name])
                     for name in sorted({r[0] for r in results})}
    return stats(results) | {"rps": len(results) / wall, "wall_s": wall,
                             "per_signature": per_signature}


@contextlib.contextmanager
def server_process(config: str, model: str, *extra: str, timeout: float = 600.0):
    """`python -m serving` on CONFIG at a free port, from when MODEL is available until the
    block ends: yields (the gRPC target, the process)."""
    port = portpicker.pick_unused_port()
    command = [sys.executable, "-m", "serving", "--model-config", config, "--port", str(port),
               "--rest-port", "0", "--log-level", "WARNING", *extra]
    env = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.Popen(command, env=env)
    try:
        target = f"127.0.0.1:{port}"
        client.wait_until_available(target, model, timeout=timeout)
        yield target, proc
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=120)


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.quick:
        args.clients, args.requests = 4, 30
    with tempfile.TemporaryDirectory() as workdir:
        config = args.model_config or toy_config(workdir)
        models = load_model_server_config(config).model_config_list.config
        model = next((m for m in models if m.name == args.model), None) if args.model \
            else models[0]
        if model is None:
            sys.exit(f"model {args.model!r} is not in {config}")
        extra = ["--max-concurrent-rpcs", str(max(64, 2 * args.clients)),
                 "--grpc-threads", str(max(8, args.clients))]
        if args.batching_config:
            extra += ["--batching-config", args.batching_config]
        with server_process(config, model.name, *extra) as (target, server):
            wanted = set(args.signatures.split(",")) if args.signatures else set()
            with client.connect(target) as channel:
                specs = load_specs(channel, model.name, model.base_path, wanted)
            total = args.clients * args.requests
            recorder = Recorder(server.pid, total)
            lengths = {k: int(v) for k, v in (item.split("=") for item in
                                              args.lengths.split(",") if item)}
            wall = run_clients(target, model.name, specs, args.clients, args.requests,
                               args.length, recorder, lengths)
            rss_last = recorder.proc.memory_info().rss

    result = summarize(recorder.results, wall)
    growth = (rss_last - recorder.rss_first) / recorder.rss_first
    result |= {"model": model.name, "clients": args.clients, "requests_per_client": args.requests,
               "batching": bool(args.batching_config),
               "rss_mb_after_first_100": recorder.rss_first / 2**20,
               "rss_mb_after_last_100": rss_last / 2**20, "rss_mb_peak": recorder.rss_peak / 2**20,
               "rss_growth": growth,
               "error_samples": sorted({r[2] for r in recorder.results if r[2]})[:5],
               "meets_targets": {"zero_errors": result["errors"] == 0,
                                 "rss_growth_under_10pct": growth < 0.10}}

    print(f"{'signature':<20}{'requests':>9}{'errors':>8}{'p50 ms':>9}{'p95 ms':>9}{'p99 ms':>9}")
    for name, row in list(result["per_signature"].items()) + [("all", result)]:
        print(f"{name:<20}{row['requests']:>9}{row['errors']:>8}{row['p50_ms']:>9.1f}"
              f"{row['p95_ms']:>9.1f}{row['p99_ms']:>9.1f}")
    print(f"{result['rps']:.1f} requests/s with {args.clients} clients; server RSS "
          f"{result['rss_mb_after_first_100']:.0f} MB after the first {RSS_WINDOW} requests, "
          f"{result['rss_mb_after_last_100']:.0f} MB at the end ({100 * growth:+.1f}%)")
    return write_result(args.json, result)


if __name__ == "__main__":
    sys.exit(main())
