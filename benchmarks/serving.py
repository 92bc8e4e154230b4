"""Serving benchmark: the exported Jukebox model behind the local TF-Serving-compatible server.

    python benchmarks/serving.py --json PATH [--quick] [--keep DIR] [--preset small|tiny]

Builds untrained runs of --preset (default `small`, the sizes a CPU user trains: VQ-VAE hops
8/32/128 at 22050 Hz, a top prior with lyrics and two upsamplers) with the CLI's own commands
on demo audio (0 training steps: time per request does not depend on the weights), exports
them with `jukebox-tf export`, then:

1. in-process vs through gRPC: a 5-second `encode` run by the SavedModel loaded in this
   process and by the server (`python -m serving`, a subprocess); `grpc_overhead_ratio` =
   (gRPC median - in-process median) / in-process median (target: under 0.10);
2. latency: `encode` (1 s of audio), `decode` (1 s of level-0 codes) and `sample` (64 tokens)
   at concurrency 1, 4 and 8 (threads, a channel each), with the server's batching off and on
   (serving/batching.config): per signature and concurrency `p50_ms`, `p99_ms`, `rps`.
   Every signature takes batches (settings one per row), so with batching on, concurrent
   requests of equal shapes run as one call, as stock TF Serving's batcher would run them;
3. the load test of benchmarks/serving_load.py against the same model: 8 clients x 50 mixed
   requests (encode, decode, upsample, metadata), zero errors and under 10% RSS growth of the
   server between the first and the last 100 requests.

--quick: fewer requests per point, concurrency 1 and 4, and a 4 x 30 load test.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import sys
import tempfile
import threading
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# The repo goes ahead of this folder (sys.path[0] for a script), or `import serving` would
# find this file instead of the serving package.
sys.path.insert(0, REPO)
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import bench_common  # noqa: E402
from bench_common import write_result  # noqa: E402

import serving_load  # noqa: E402
from serving import client  # noqa: E402
from serving.toy_model import write_model_config  # noqa: E402

RATE = 22050
MODEL = "jukebox"


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--json", required=True, help="where to write the results")
    p.add_argument("--quick", action="store_true", help="a shorter run")
    p.add_argument("--keep", metavar="DIR", help="build and keep the models in DIR")
    p.add_argument("--preset", choices=("small", "tiny"), default="small",
                   help="the VQ-VAE and prior presets served (default small: what a CPU "
                        "user trains; tiny makes the per-request overhead look larger)")
    return p.parse_args(argv)


# -- models ---------------------------------------------------------------------------------

def build_and_export(root: str, preset: str) -> str:
    return bench_common.build_and_export(root, preset, RATE, max_seconds=10.0)["base"]


# -- requests ------------------------------------------------------------------------------

def requests(rng) -> dict:
    strings = lambda s: np.array([s.encode()], dtype=object)  # noqa: E731
    row = lambda value, dtype: np.array([value], dtype)  # noqa: E731 - settings are per row
    return {
        "encode": {"audio": rng.normal(0, 0.3, (1, RATE)).astype(np.float32),
                   "sample_rate": row(RATE, np.int32)},
        "decode": {"codes": rng.integers(0, 64, (1, RATE // 8)).astype(np.int32),
                   "level": row(0, np.int32)},
        "sample": {"artist": strings("ann"), "genres": strings("rock"),
                   "lyrics": strings("la la la"), "total_seconds": row(0.0, np.float32),
                   "offset_seconds": row(0.0, np.float32), "n_tokens": row(64, np.int32),
                   "temperature": row(1.0, np.float32), "top_k": row(0, np.int32),
                   "top_p": row(0.0, np.float32), "seed": row(rng.integers(1 << 30), np.int64),
                   "prime": np.zeros([1, 0], np.int32)},
    }


def stats(latencies, wall) -> dict:
    ms = np.array(latencies) * 1000
    return {"p50_ms": float(np.percentile(ms, 50)), "p99_ms": float(np.percentile(ms, 99)),
            "rps": len(ms) / wall, "requests": len(ms)}


def measure(target, signature, concurrency, per_client) -> dict:
    errors, latencies, lock = [], [], threading.Lock()

    def worker(seed):
        rng = np.random.default_rng(seed)
        with client.connect(target) as channel:
            for _ in range(per_client):
                inputs = requests(rng)[signature]
                start = time.perf_counter()
                try:
                    client.predict(channel, MODEL, inputs, signature=signature, timeout=600)
                except client.ServingError as e:
                    errors.append(str(e))
                with lock:
                    latencies.append(time.perf_counter() - start)

    threads = [threading.Thread(target=worker, args=(s,)) for s in range(concurrency)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return stats(latencies, time.perf_counter() - start) | {"errors": len(errors)}


def server_process(config, batching_config=None):
    extra = ["--grpc-threads", "8"] + (["--batching-config", batching_config]
                                       if batching_config else [])
    return serving_load.server_process(config, MODEL, *extra)


def median_pair(first, second, repeats) -> tuple[float, float]:
    """Median seconds of two functions called alternately, after a warm-up call of each."""
    first(), second()
    times = ([], [])
    for _ in range(repeats):
        for fn, out in ((first, times[0]), (second, times[1])):
            start = time.perf_counter()
            fn()
            out.append(time.perf_counter() - start)
    return float(np.median(times[0])), float(np.median(times[1]))


def main(argv=None) -> int:
    args = parse_args(argv)
    import tensorflow as tf

    concurrencies = (1, 4) if args.quick else (1, 4, 8)
    per_client = {"encode": 5, "decode": 5, "sample": 2} if args.quick else \
        {"encode": 20, "decode": 20, "sample": 5}
    repeats = 10 if args.quick else 30
    result = {"quick": args.quick, "preset": args.preset, "signatures": {}}
    with contextlib.ExitStack() as stack:
        root = args.keep or stack.enter_context(tempfile.TemporaryDirectory())
        started = time.perf_counter()
        base = build_and_export(root, args.preset)
        result["export_s"] = time.perf_counter() - started
        config = write_model_config(os.path.join(root, "models.config"), MODEL, base)
        version = max(int(v) for v in os.listdir(base) if v.isdigit())

        audio = np.random.default_rng(0).normal(0, 0.3, (1, 5 * RATE)).astype(np.float32)
        encode_in = {"audio": audio, "sample_rate": np.array([RATE], np.int32)}
        encode = tf.saved_model.load(os.path.join(base, str(version))).signatures["encode"]
        tensors = {k: tf.constant(v) for k, v in encode_in.items()}
        run_in_process = lambda: {k: v.numpy() for k, v in encode(**tensors).items()}  # noqa

        for batching in (False, True):
            batching_config = os.path.join(REPO, "serving", "batching.config") \
                if batching else None
            with server_process(config, batching_config) as (target, _):
                with client.connect(target) as channel:
                    if not batching:
                        # Alternated, so that load from elsewhere hits both alike.
                        in_process, served = median_pair(run_in_process, lambda: client.predict(
                            channel, MODEL, encode_in, signature="encode"), repeats)
                        result |= {"encode_5s_in_process_ms": in_process * 1000,
                                   "encode_5s_grpc_ms": served * 1000,
                                   "grpc_overhead_ratio": (served - in_process) / in_process}
                    for signature in ("encode", "decode", "sample"):  # warm every signature
                        client.predict(channel, MODEL, requests(np.random.default_rng(0))
                                       [signature], signature=signature, timeout=600)
                key = "batching" if batching else "no_batching"
                for signature in ("encode", "decode", "sample"):
                    for c in concurrencies:
                        row = measure(target, signature, c, per_client[signature])
                        result["signatures"].setdefault(signature, {}).setdefault(key, {})[
                            str(c)] = row
                        print(f"{signature:<8} {key:<12} c={c}: p50 {row['p50_ms']:8.1f} ms  "
                              f"p99 {row['p99_ms']:8.1f} ms  {row['rps']:6.2f} req/s  "
                              f"errors {row['errors']}", flush=True)

        load_json = os.path.join(root, "load.json")
        load_argv = ["--json", load_json, "--model-config", config, "--model", MODEL,
                     "--signatures", "encode,decode,metadata" if args.quick
                     else "encode,decode,upsample,metadata", "--length", "16",
                     "--lengths", f"audio={RATE // 4}"]
        if args.quick:
            load_argv.append("--quick")
        with contextlib.redirect_stdout(io.StringIO()):
            serving_load.main(load_argv)
        with open(load_json) as f:
            load = json.load(f)
    # Flat keys too: "<signature>_c<concurrency>" (no batching) for quick comparisons.
    for signature, modes in result["signatures"].items():
        for c, row in modes["no_batching"].items():
            result[f"{signature}_c{c}"] = {k: row[k] for k in ("p50_ms", "p99_ms", "rps")}
    result["load_test"] = {k: load[k] for k in (
        "clients", "requests_per_client", "requests", "errors", "p50_ms", "p99_ms", "rps",
        "rss_mb_after_first_100", "rss_mb_after_last_100", "rss_growth", "error_samples",
        "per_signature")}
    result["meets_targets"] = {
        "grpc_overhead_under_10pct": result["grpc_overhead_ratio"] < 0.10,
        "load_zero_errors": load["errors"] == 0,
        "load_rss_growth_under_10pct": load["rss_growth"] < 0.10}
    print(f"encode 5 s: in-process {result['encode_5s_in_process_ms']:.1f} ms, gRPC "
          f"{result['encode_5s_grpc_ms']:.1f} ms, overhead "
          f"{100 * result['grpc_overhead_ratio']:+.1f}%")
    print(f"load: {load['clients']} x {load['requests_per_client']} requests, "
          f"{load['errors']} errors, RSS growth {100 * load['rss_growth']:+.1f}%")
    return write_result(args.json, result)


if __name__ == "__main__":
    sys.exit(main())
