"""The local model server: TF Serving's gRPC API (and REST) over a ModelServerConfig.

The command line is in `cli.py`. From Python, `ModelServer(config).start()` serves in
background threads (tests, benchmarks) and `serve(config, port, rest_port, host)` blocks until
SIGINT/SIGTERM, then drains in-flight requests for up to `grace_seconds`.
"""

from __future__ import annotations

import functools
import json
import logging
import signal
import threading
from concurrent import futures

import grpc
from tensorflow_serving.apis import model_service_pb2_grpc, prediction_service_pb2_grpc

from jukebox_tf.errors import JukeboxError
from serving.batching import Batcher
from serving.config import ConfigError, load_batching_options, load_model_server_config
from serving.model_manager import ModelManager
from serving.rest import RestApi, RestServer
from serving.servable import Servable
from serving.service import ServingCore, run_direct
from serving.options import ServerOptions
from serving.validation import RequestError, parse_rules

log = logging.getLogger("serving")


def _load_operator_rules(path: str | None, model_names) -> dict:
    if not path:
        return {}
    try:
        with open(path, encoding="utf-8") as f:
            obj = json.load(f)
    except (OSError, ValueError) as e:
        raise ConfigError(f"cannot read the input limits {path!r}: {e}") from e
    if not isinstance(obj, dict) or set(obj) - set(model_names):
        raise ConfigError(f"{path}: expected {{MODEL: rules}} for models "
                          f"{', '.join(model_names)}")
    try:
        return {model: parse_rules(rules, f"{path}: {model}") for model, rules in obj.items()}
    except ValueError as e:
        raise ConfigError(str(e)) from None


class _Servicer(prediction_service_pb2_grpc.PredictionServiceServicer,
                model_service_pb2_grpc.ModelServiceServicer):
    """gRPC methods -> ServingCore; Classify, Regress... stay UNIMPLEMENTED."""

    def __init__(self, core: ServingCore):
        self._core = core

    def _call(self, method, request, context):
        try:
            return method(request)
        except RequestError as e:
            context.abort(e.code, e.message)
        except Exception as e:  # noqa: BLE001 - one bad request must not end the server
            log.exception("gRPC %s failed", method.__name__)
            context.abort(grpc.StatusCode.INTERNAL, f"internal error: {e}")

    def Predict(self, request, context):
        return self._call(self._core.predict, request, context)

    def GetModelMetadata(self, request, context):
        return self._call(self._core.metadata, request, context)

    def GetModelStatus(self, request, context):
        return self._call(self._core.status, request, context)


class ModelServer:
    """Binds the ports (a busy one fails at once), loads the models, then answers gRPC (and
    REST) from background threads."""

    def __init__(self, config_path: str, options: ServerOptions | None = None, checks=()):
        self.options = options or ServerOptions()
        self.config = load_model_server_config(config_path)
        models = self.config.model_config_list.config
        rules = _load_operator_rules(self.options.input_limits, [m.name for m in models])
        batching = self.options.batching_config
        self.batcher = Batcher(load_batching_options(batching)) if batching else None
        self.manager = ModelManager(models, self.options.poll_seconds, rules,
                                    loader=functools.partial(Servable, xla=self.options.xla))
        self.core = ServingCore(self.manager, self.options.limits,
                                self.batcher or run_direct, checks)
        self._grpc = self._rest = self._rest_thread = None
        self.port = self.rest_port = None

    @property
    def target(self) -> str:
        """host:port for gRPC clients."""
        host = self.options.host
        return f"{'127.0.0.1' if host in ('', '0.0.0.0', '::') else host}:{self.port}"

    def start(self) -> "ModelServer":
        try:
            self._start()
        except BaseException:
            self.stop()  # release whatever was bound or started
            raise
        return self

    def _start(self) -> None:
        opts = self.options
        request_bytes = opts.limits.max_request_bytes
        self._grpc = grpc.server(
            futures.ThreadPoolExecutor(opts.grpc_threads, thread_name_prefix="grpc"),
            maximum_concurrent_rpcs=opts.max_concurrent_rpcs,
            options=[
                # Twice the checked limit, so oversized requests mostly get our
                # INVALID_ARGUMENT naming the input; past it gRPC says RESOURCE_EXHAUSTED.
                ("grpc.max_receive_message_length", min(2 * request_bytes, 2**31 - 1)),
                ("grpc.max_send_message_length", 2**31 - 1),
                ("grpc.so_reuseport", 0),  # a port in use is an error, not shared
            ])
        servicer = _Servicer(self.core)
        prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(servicer, self._grpc)
        model_service_pb2_grpc.add_ModelServiceServicer_to_server(servicer, self._grpc)
        address = f"[{opts.host}]:{opts.port}" if ":" in opts.host else f"{opts.host}:{opts.port}"
        try:
            self.port = self._grpc.add_insecure_port(address)
        except RuntimeError:
            self.port = 0
        if not self.port:
            raise JukeboxError(f"cannot listen for gRPC on {address} (port in use?)")
        if opts.rest_port:
            api = RestApi(self.core, max_body_bytes=4 * request_bytes)  # JSON text is bulkier
            try:
                self._rest = RestServer((opts.host, opts.rest_port), api, opts.rest_threads)
            except OSError as e:
                raise JukeboxError(f"cannot listen for REST on {opts.host}:{opts.rest_port}: "
                                   f"{e.strerror or e}") from e
            self.rest_port = self._rest.server_address[1]
        self.manager.start()  # the first load blocks, so clients never see an empty server
        self._grpc.start()
        if self._rest is not None:
            self._rest_thread = threading.Thread(target=self._rest.serve_forever,
                                                 name="rest", daemon=True)
            self._rest_thread.start()
        log.info("serving %s: gRPC on %s%s", ", ".join(self.manager.model_names()),
                 self.target, f", REST on {opts.host}:{self.rest_port}" if self._rest else "")

    def stop(self) -> None:
        """Stops taking requests, lets in-flight ones finish (up to grace_seconds), unloads."""
        grace = self.options.grace_seconds
        if self._rest_thread is not None:
            self._rest.shutdown()  # waits for serve_forever, so only once it runs
            self._rest.drain(grace)
        if self._rest is not None:
            self._rest.server_close()
        if self._grpc is not None:
            self._grpc.stop(grace).wait()
        if self.batcher is not None:
            self.batcher.stop()
        self.manager.stop()
        log.info("server stopped")

    def __enter__(self) -> "ModelServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def serve(config_path: str, port: int = 8500, rest_port: int = 8501,
          host: str = "127.0.0.1", **options) -> None:
    """Serves until SIGINT or SIGTERM; `options` are further ServerOptions fields."""
    stop = threading.Event()
    previous = {s: signal.signal(s, lambda *_: stop.set())
                for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        server = ModelServer(config_path, ServerOptions(host=host, port=port,
                                                        rest_port=rest_port, **options))
        server.start()
        try:
            while not stop.wait(0.5):  # short waits keep the main thread free for signals
                pass
            log.info("signal received; stopping")
        finally:
            server.stop()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
