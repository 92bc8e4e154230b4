"""The server's knobs, kept free of heavy imports so the command line can build its parser
(and answer --help) without loading TensorFlow."""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class Limits:
    """Server-wide request limits (CLI: --max-batch-size, --max-elements, --max-request-mb)."""

    max_batch_size: int = 64
    max_elements: int = 1 << 24          # per input; 6 min of 44.1 kHz mono is 15.9M
    max_request_bytes: int = 64 << 20


@dataclasses.dataclass
class ServerOptions:
    """Everything configurable besides the model config; CLI flags mirror the names."""

    host: str = "127.0.0.1"
    port: int = 8500
    rest_port: int = 8501          # 0 turns REST off, as upstream's --rest_api_port
    poll_seconds: float = 1.0      # upstream --file_system_poll_wait_seconds
    grpc_threads: int = 8          # the bounded pool that runs RPCs
    max_concurrent_rpcs: int = 64  # beyond this, RESOURCE_EXHAUSTED from gRPC itself
    rest_threads: int = 8
    limits: Limits = dataclasses.field(default_factory=Limits)
    batching_config: str | None = None  # a BatchingParameters file turns batching on
    input_limits: str | None = None     # operator per-input rules, {"MODEL": {...}}
    grace_seconds: float = 5.0
    # Functions compiled with XLA (jit_compile) run; False refuses them as stock TF Serving
    # does unless started with --xla_cpu_compilation_enabled=true.
    xla: bool = True
