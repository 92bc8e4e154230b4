"""Thin helpers over the stock TF Serving gRPC stubs: numpy in, numpy out.

They work against this package's server and stock `tensorflow_model_server` alike. `server`
is "host:port" (a channel is opened for the call) or an open `grpc.Channel` (reuse one for
many calls: `with connect("localhost:8500") as channel: ...`). Failed RPCs raise
`ServingError` with the gRPC status code and the server's message.
"""

from __future__ import annotations

import contextlib
import time

import grpc
import numpy as np
import tensorflow as tf
from tensorflow_serving.apis import (get_model_metadata_pb2, get_model_status_pb2, model_pb2,
                                     model_service_pb2_grpc, predict_pb2,
                                     prediction_service_pb2_grpc)

from jukebox_tf.errors import JukeboxError
from serving.validation import dtype_name

MAX_MESSAGE_BYTES = 256 << 20  # audio responses are large; gRPC's default is 4 MiB


class ServingError(JukeboxError):
    """A failed RPC: `code` (grpc.StatusCode) and `details` (the server's message)."""

    def __init__(self, code: grpc.StatusCode, details: str):
        super().__init__(f"{code.name}: {details}")
        self.code, self.details = code, details


def connect(target: str, max_message_bytes: int = MAX_MESSAGE_BYTES) -> grpc.Channel:
    """An insecure channel to `host:port` that accepts messages up to `max_message_bytes`."""
    return grpc.insecure_channel(target, options=[
        ("grpc.max_receive_message_length", max_message_bytes),
        ("grpc.max_send_message_length", max_message_bytes)])


@contextlib.contextmanager
def _channel(server):
    if isinstance(server, str):
        with connect(server) as channel:
            yield channel
    else:
        yield server


def _call(method, request, timeout):
    try:
        return method(request, timeout=timeout)
    except grpc.RpcError as e:
        raise ServingError(e.code(), e.details() or "") from None


def _model_spec(model: str, version: int | None, signature: str = "") -> model_pb2.ModelSpec:
    spec = model_pb2.ModelSpec(name=model, signature_name=signature)
    if version is not None:
        spec.version.value = version
    return spec


def predict(server, model: str, inputs: dict, signature: str = "serving_default",
            version: int | None = None, output_filter=(), timeout: float | None = None
            ) -> dict[str, np.ndarray]:
    """Runs one signature; `inputs` maps input names to arrays (dtypes as the signature's)."""
    request = predict_pb2.PredictRequest(model_spec=_model_spec(model, version, signature),
                                         output_filter=list(output_filter))
    for name, value in inputs.items():
        request.inputs[name].CopyFrom(tf.make_tensor_proto(value))
    with _channel(server) as channel:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        response = _call(stub.Predict, request, timeout)
    return {name: tf.make_ndarray(proto) for name, proto in response.outputs.items()}


def metadata(server, model: str, version: int | None = None, timeout: float | None = None
             ) -> dict:
    """{signature name: SignatureDef proto} of the served (or given) version."""
    request = get_model_metadata_pb2.GetModelMetadataRequest(
        model_spec=_model_spec(model, version), metadata_field=["signature_def"])
    with _channel(server) as channel:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        response = _call(stub.GetModelMetadata, request, timeout)
    signature_map = get_model_metadata_pb2.SignatureDefMap()
    response.metadata["signature_def"].Unpack(signature_map)
    return dict(signature_map.signature_def)


def describe(signature_def) -> dict:
    """{"inputs"/"outputs": {name: (dtype name, shape with None for open dims)}}."""
    def tensors(infos):
        return {name: (dtype_name(info.dtype),
                       None if info.tensor_shape.unknown_rank else tuple(
                           None if d.size < 0 else d.size for d in info.tensor_shape.dim))
                for name, info in sorted(infos.items())}
    return {"inputs": tensors(signature_def.inputs), "outputs": tensors(signature_def.outputs)}


def status(server, model: str, version: int | None = None, timeout: float | None = None
           ) -> list[dict]:
    """[{"version", "state", "error_code", "error_message"}] per known version."""
    request = get_model_status_pb2.GetModelStatusRequest(model_spec=_model_spec(model, version))
    with _channel(server) as channel:
        stub = model_service_pb2_grpc.ModelServiceStub(channel)
        response = _call(stub.GetModelStatus, request, timeout)
    states = get_model_status_pb2.ModelVersionStatus.State
    names = {c.value[0]: c.name for c in grpc.StatusCode}
    return [{"version": s.version, "state": states.Name(s.state),
             "error_code": names.get(s.status.error_code, str(s.status.error_code)),
             "error_message": s.status.error_message} for s in response.model_version_status]


def wait_until_available(server, model: str, version: int | None = None,
                         timeout: float = 60.0) -> int:
    """Polls status until a version (the given one, else any) is AVAILABLE; returns it."""
    deadline = time.monotonic() + timeout
    last = "no answer"
    with _channel(server) as channel:
        while time.monotonic() < deadline:
            try:
                ready = [s["version"] for s in status(channel, model, version, timeout=5)
                         if s["state"] == "AVAILABLE"]
                if ready:
                    return max(ready)
                last = "no version AVAILABLE yet"
            except ServingError as e:  # not up yet, or the version not found yet
                last = str(e)
            time.sleep(0.2)
    raise ServingError(grpc.StatusCode.DEADLINE_EXCEEDED,
                       f"model '{model}' not available after {timeout:.0f} s ({last})")
