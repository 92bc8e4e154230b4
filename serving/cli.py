"""The serve command line, shared by `python -m serving` and `jukebox-tf serve`.

    python -m serving --model-config serving/models.config [--port 8500] [--rest-port 8501]
                      [--host 127.0.0.1] [--batching-config serving/batching.config] ...

Building the parser imports nothing heavy; TensorFlow loads when `run` starts the server.
"""

from __future__ import annotations

import argparse
import logging
import sys

from jukebox_tf.errors import JukeboxError
from serving.options import Limits, ServerOptions


def add_arguments(parser: argparse.ArgumentParser) -> None:
    d = ServerOptions()
    parser.add_argument("--model-config", required=True,
                        help="ModelServerConfig text proto (relative base_path values are "
                             "taken from the file's folder)")
    parser.add_argument("--port", type=int, default=d.port, help="gRPC port (default 8500)")
    parser.add_argument("--rest-port", type=int, default=d.rest_port,
                        help="REST port (default 8501; 0 turns REST off)")
    parser.add_argument("--host", default=d.host,
                        help="address to bind (default 127.0.0.1; 0.0.0.0 for all interfaces)")
    parser.add_argument("--poll-seconds", type=float, default=d.poll_seconds,
                        help="how often to look for new model versions (default 1)")
    parser.add_argument("--batching-config", default=None,
                        help="BatchingParameters text proto; turns server-side batching on")
    parser.add_argument("--input-limits", default=None,
                        help="JSON {MODEL: {SIGNATURE: {INPUT: {min, max, max_dims, ...}}}} "
                             "overriding the models' own per-input limits")
    parser.add_argument("--max-batch-size", type=int, default=d.limits.max_batch_size,
                        help="largest dimension 0 accepted on batched inputs (default 64)")
    parser.add_argument("--max-elements", type=int, default=d.limits.max_elements,
                        help="most elements in one input tensor (default 16M)")
    parser.add_argument("--max-request-mb", type=float,
                        default=d.limits.max_request_bytes / 2**20,
                        help="largest request accepted, in MiB (default 64)")
    parser.add_argument("--grpc-threads", type=int, default=d.grpc_threads,
                        help="threads running RPCs (default 8)")
    parser.add_argument("--max-concurrent-rpcs", type=int, default=d.max_concurrent_rpcs,
                        help="RPCs accepted at once; more get RESOURCE_EXHAUSTED (default 64)")
    parser.add_argument("--rest-threads", type=int, default=d.rest_threads,
                        help="REST requests handled at once; more wait (default 8)")
    parser.add_argument("--no-xla", action="store_true",
                        help="refuse the signatures compiled with XLA (the models' *_xla "
                             "twins), as stock TF Serving does unless started with "
                             "--xla_cpu_compilation_enabled=true")
    parser.add_argument("--log-level", default="INFO", help="logging level (default INFO)")


def run(args: argparse.Namespace) -> int:
    """Serves until SIGINT/SIGTERM; problems with the config or ports raise JukeboxError."""
    from serving.server import serve

    logging.basicConfig(level=args.log_level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    limits = Limits(max_batch_size=args.max_batch_size, max_elements=args.max_elements,
                    max_request_bytes=int(args.max_request_mb * 2**20))
    serve(args.model_config, args.port, args.rest_port, args.host,
          poll_seconds=args.poll_seconds, grpc_threads=args.grpc_threads,
          max_concurrent_rpcs=args.max_concurrent_rpcs, rest_threads=args.rest_threads,
          limits=limits, batching_config=args.batching_config, input_limits=args.input_limits,
          xla=not args.no_xla)
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m serving",
                                     description="A local TF-Serving-compatible model server.")
    add_arguments(parser)
    args = parser.parse_args(argv)
    try:
        return run(args)
    except JukeboxError as e:
        print(f"serve: error: {e}", file=sys.stderr)
        return 2
