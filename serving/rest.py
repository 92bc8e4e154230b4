"""TF Serving's REST API over the same ServingCore, on the standard library's HTTP server.

    POST /v1/models/NAME[/versions/N | /labels/L]:predict   {"instances": [...]} or {"inputs": ...}
    GET  /v1/models/NAME[/versions/N | /labels/L]            version status
    GET  /v1/models/NAME[/versions/N | /labels/L]/metadata   signature defs

JSON is read and written as upstream does: the row ("instances" -> "predictions") and columnar
("inputs" -> "outputs") formats; string inputs as text or {"b64": ...}; string outputs as text,
or {"b64": ...} when the output name ends in `_bytes` or the bytes are not UTF-8. Errors are
{"error": message} with the HTTP code of the gRPC status (400 INVALID_ARGUMENT, 404 NOT_FOUND...).
"""

from __future__ import annotations

import base64
import json
import logging
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import grpc
import numpy as np
import tensorflow as tf
from google.protobuf import json_format
from tensorflow_serving.apis import get_model_metadata_pb2, get_model_status_pb2, model_pb2

from serving.service import METADATA_FIELD, ServingCore
from serving.validation import RequestError, SignatureSpec, check_names, invalid, not_found

log = logging.getLogger("serving")

PATH = re.compile(r"^/v1/models/(?P<name>[^/:]+)"
                  r"(?:/versions/(?P<version>\d+)|/labels/(?P<label>[^/:]+))?"
                  r"(?P<tail>/metadata|:predict|:classify|:regress)?/?$")
HTTP_CODES = {
    grpc.StatusCode.OK: 200, grpc.StatusCode.INVALID_ARGUMENT: 400,
    grpc.StatusCode.FAILED_PRECONDITION: 400, grpc.StatusCode.OUT_OF_RANGE: 400,
    grpc.StatusCode.UNAUTHENTICATED: 401, grpc.StatusCode.PERMISSION_DENIED: 403,
    grpc.StatusCode.NOT_FOUND: 404, grpc.StatusCode.ALREADY_EXISTS: 409,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 429, grpc.StatusCode.CANCELLED: 499,
    grpc.StatusCode.UNIMPLEMENTED: 501, grpc.StatusCode.UNAVAILABLE: 503,
    grpc.StatusCode.DEADLINE_EXCEEDED: 504}


def _message_json(message) -> dict:
    return json_format.MessageToDict(message, preserving_proto_field_name=True,
                                     including_default_value_fields=True)


# --- JSON <-> arrays ----------------------------------------------------------------------


def _is_b64(value) -> bool:
    return isinstance(value, dict) and set(value) == {"b64"}


def _to_bytes(value, where: str):
    """Nested lists of str / {"b64": ...} to nested lists of bytes."""
    if isinstance(value, list):
        return [_to_bytes(v, where) for v in value]
    if isinstance(value, str):
        return value.encode("utf-8")
    if _is_b64(value) and isinstance(value["b64"], str):
        try:
            return base64.b64decode(value["b64"], validate=True)
        except ValueError:
            raise invalid(f"{where}: invalid base64 in {{\"b64\": ...}}") from None
    raise invalid(f"{where}: expected text or {{\"b64\": ...}}, got {type(value).__name__}")


def json_to_array(spec: SignatureSpec, name: str, value) -> np.ndarray:
    """One input's JSON value as an array of the signature's dtype."""
    dtype, where = spec.inputs[name].dtype, f"input '{name}' of signature '{spec.name}'"
    if dtype == tf.string:
        array = np.array(_to_bytes(value, where), dtype=object)
        if not all(isinstance(v, bytes) for v in array.flat):
            raise invalid(f"{where}: ragged nested lists")
        return array
    try:
        array = np.asarray(value)
    except ValueError:
        raise invalid(f"{where}: ragged nested lists") from None
    if array.size == 0:
        return array.astype(dtype.as_numpy_dtype)
    kind = array.dtype.kind
    allowed = "b" if dtype.is_bool else ("iu" if dtype.is_integer else "iuf")
    if kind not in allowed:
        got = {"f": "a number with a fraction", "b": "a boolean"}.get(kind, "a non-number")
        raise invalid(f"{where}: expected {dtype.name} values, got {got}")
    if dtype.is_integer:
        info = np.iinfo(dtype.as_numpy_dtype)
        if array.min() < info.min or array.max() > info.max:
            raise invalid(f"{where}: values outside the {dtype.name} range")
    return array.astype(dtype.as_numpy_dtype)


def _leaf_json(value, as_b64: bool):
    if isinstance(value, list):
        return [_leaf_json(v, as_b64) for v in value]
    if isinstance(value, bytes):
        if not as_b64:
            try:
                return value.decode("utf-8")
            except UnicodeDecodeError:
                pass
        return {"b64": base64.b64encode(value).decode("ascii")}
    return value


def array_to_json(name: str, array: np.ndarray):
    return _leaf_json(array.tolist(), name.endswith("_bytes"))


def _named(value, spec: SignatureSpec) -> bool:
    """Whether a JSON value names inputs ({name: value}) rather than being the one input."""
    if isinstance(value, dict) and not _is_b64(value):
        return True
    if len(spec.inputs) != 1:
        raise invalid(f"signature '{spec.name}' has inputs {', '.join(spec.inputs) or 'none'}: "
                      "name them in an object")
    return False


def rows_to_arrays(spec: SignatureSpec, instances) -> dict[str, np.ndarray]:
    """The row format: a list with one entry per batch element."""
    if not isinstance(instances, list) or not instances:
        raise invalid("\"instances\" must be a non-empty list")
    if not _named(instances[0], spec):
        return {name: json_to_array(spec, name, instances) for name in spec.inputs}
    if not all(isinstance(i, dict) for i in instances):
        raise invalid("\"instances\" mixes objects and values")
    check_names(spec, set().union(*instances))
    for name in spec.inputs:
        if any(name not in i for i in instances):
            raise invalid(f"input '{name}' of signature '{spec.name}': missing from some "
                          "instances")
    return {name: json_to_array(spec, name, [i[name] for i in instances]) for name in spec.inputs}


def columns_to_arrays(spec: SignatureSpec, inputs) -> dict[str, np.ndarray]:
    """The columnar format: each input whole."""
    if not _named(inputs, spec):
        inputs = {next(iter(spec.inputs)): inputs}
    check_names(spec, inputs)
    return {name: json_to_array(spec, name, value) for name, value in inputs.items()}


def outputs_to_rows(spec: SignatureSpec, outputs: dict, batch: int) -> list:
    for name, array in outputs.items():
        if array.ndim == 0 or array.shape[0] != batch:
            raise invalid(f"output '{name}' of signature '{spec.name}' has no batch dimension "
                          f"of size {batch}; use the columnar \"inputs\" format")
    if len(outputs) == 1:
        (name, array), = outputs.items()
        return array_to_json(name, array)
    columns = {k: array_to_json(k, v) for k, v in outputs.items()}
    return [{k: columns[k][i] for k in columns} for i in range(batch)]


# --- routing ------------------------------------------------------------------------------


class RestApi:
    """Maps (method, path, body) to (HTTP status, JSON object) through a ServingCore."""

    def __init__(self, core: ServingCore, max_body_bytes: int):
        self.core, self.max_body_bytes = core, max_body_bytes

    def handle(self, method: str, path: str, body: bytes | None) -> tuple[int, dict]:
        try:
            return 200, self._route(method, path, body)
        except RequestError as e:
            return HTTP_CODES.get(e.code, 500), {"error": e.message}
        except Exception as e:  # noqa: BLE001 - one bad request must not end the server
            log.exception("REST %s %s failed", method, path)
            return 500, {"error": f"internal error: {e}"}

    def _route(self, method: str, path: str, body: bytes | None) -> dict:
        match = PATH.match(path.split("?", 1)[0])
        if match is None:
            raise not_found(f"malformed request path {path!r} (expected /v1/models/NAME"
                            "[/versions/N][:predict | /metadata])")
        name, label, tail = match["name"], match["label"], match["tail"]
        version = int(match["version"]) if match["version"] else None
        if method == "GET" and tail is None:
            return self._status(name, version, label)
        if method == "GET" and tail == "/metadata":
            return self._metadata(name, version, label)
        if method == "POST" and tail == ":predict":
            return self._predict(name, version, label, body)
        if method == "POST" and tail in (":classify", ":regress"):
            raise RequestError(grpc.StatusCode.UNIMPLEMENTED, f"{tail[1:]} is not supported")
        raise not_found(f"no {method} handler for {path!r}")

    def _model_spec(self, name, version, label):
        spec = model_pb2.ModelSpec(name=name, version_label=label or "")
        if version is not None:
            spec.version.value = version
        return spec

    def _status(self, name, version, label) -> dict:
        request = get_model_status_pb2.GetModelStatusRequest(
            model_spec=self._model_spec(name, version, label))
        return _message_json(self.core.status(request))

    def _metadata(self, name, version, label) -> dict:
        request = get_model_metadata_pb2.GetModelMetadataRequest(
            model_spec=self._model_spec(name, version, label), metadata_field=[METADATA_FIELD])
        response = self.core.metadata(request)
        signature_map = get_model_metadata_pb2.SignatureDefMap()
        response.metadata[METADATA_FIELD].Unpack(signature_map)
        return {"model_spec": _message_json(response.model_spec),
                "metadata": {METADATA_FIELD: _message_json(signature_map)}}

    def _predict(self, name, version, label, body: bytes | None) -> dict:
        try:
            request = json.loads(body or b"")
        except (ValueError, UnicodeDecodeError) as e:
            raise invalid(f"request body is not valid JSON: {e}") from None
        if not isinstance(request, dict):
            raise invalid("request body must be a JSON object")
        unknown = set(request) - {"signature_name", "instances", "inputs"}
        if unknown:
            raise invalid(f"unknown request key {', '.join(map(repr, sorted(unknown)))}")
        if ("instances" in request) == ("inputs" in request):
            raise invalid("give exactly one of \"instances\" (row format) or \"inputs\" "
                          "(columnar format)")
        signature = request.get("signature_name")
        if signature is not None and not isinstance(signature, str):
            raise invalid("\"signature_name\" must be a string")
        servable, spec = self.core.resolve(name, version, label, signature)
        if "instances" in request:
            arrays = rows_to_arrays(spec, request["instances"])
            outputs = self.core.run_arrays(servable, spec, arrays)
            return {"predictions": outputs_to_rows(spec, outputs, len(request["instances"]))}
        arrays = columns_to_arrays(spec, request["inputs"])
        outputs = self.core.run_arrays(servable, spec, arrays)
        if len(outputs) == 1:
            (key, value), = outputs.items()
            return {"outputs": array_to_json(key, value)}
        return {"outputs": {k: array_to_json(k, v) for k, v in outputs.items()}}


# --- HTTP ---------------------------------------------------------------------------------


_DRAIN_FACTOR = 16


class _Handler(BaseHTTPRequestHandler):
    server_version = "jukebox-tf-serving"
    timeout = 60  # a client that stalls mid-request frees its slot

    def log_message(self, fmt, *args):
        log.debug("REST %s " + fmt, self.client_address[0], *args)

    def do_GET(self):
        self._answer(*self.server.api.handle("GET", self.path, None))

    def do_POST(self):
        length = self.headers.get("Content-Length")
        if length is None or not length.isdigit():
            self.close_connection = True
            return self._answer(411, {"error": "Content-Length is required"})
        limit = self.server.api.max_body_bytes
        if int(length) > limit:
            # Read the body before answering: closing on a client that is still sending makes
            # its send fail (broken pipe) before it can read why. Past 16x the limit, drop it.
            if int(length) <= _DRAIN_FACTOR * limit:
                self._discard(int(length))
            else:
                self.close_connection = True
            return self._answer(400, {"error": f"request body is {length} bytes, over the "
                                      f"limit {limit}"})
        self._answer(*self.server.api.handle("POST", self.path, self.rfile.read(int(length))))

    def _discard(self, n: int) -> None:
        while n > 0:
            chunk = self.rfile.read(min(n, 1 << 16))
            if not chunk:
                break
            n -= len(chunk)

    def _answer(self, status: int, obj: dict) -> None:
        data = json.dumps(obj).encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


class RestServer(ThreadingHTTPServer):
    """ThreadingHTTPServer with at most `max_threads` requests in flight (the rest wait)."""

    daemon_threads = True

    def __init__(self, address, api: RestApi, max_threads: int = 8):
        self.api = api
        self._max_threads = max_threads
        self._slots = threading.BoundedSemaphore(max_threads)
        super().__init__(address, _Handler)

    def drain(self, timeout: float) -> None:
        """Waits up to `timeout` seconds for in-flight requests (after `shutdown`)."""
        deadline = time.monotonic() + timeout
        for _ in range(self._max_threads):
            if not self._slots.acquire(timeout=max(0.0, deadline - time.monotonic())):
                log.warning("REST: in-flight requests still running after %.1f s", timeout)
                return

    def process_request(self, request, client_address):
        self._slots.acquire()
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._slots.release()
            raise

    def process_request_thread(self, request, client_address):
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()
