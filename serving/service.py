"""The request handling behind both front ends: resolve, validate, run, answer.

gRPC (`server.py`) hands it the tensorflow.serving protos as they arrive; REST (`rest.py`)
resolves and runs through the same methods after turning JSON into arrays.
"""

from __future__ import annotations

from typing import Callable, Iterable

import numpy as np
import tensorflow as tf
from google.protobuf import wrappers_pb2
from tensorflow_serving.apis import (get_model_metadata_pb2, get_model_status_pb2, model_pb2,
                                     predict_pb2, status_pb2)

from serving.model_manager import ModelManager
from serving.servable import Servable
from serving.options import Limits
from serving.validation import (Check, SignatureSpec, arrays_from_protos, check_arrays,
                                check_request_size, invalid, not_found)

DEFAULT_SIGNATURE = "serving_default"
METADATA_FIELD = "signature_def"  # the one metadata field TF Serving defines

Runner = Callable[[Servable, SignatureSpec, dict], dict]


def run_direct(servable: Servable, spec: SignatureSpec, arrays: dict) -> dict:
    return servable.run(spec.name, arrays)


class ServingCore:
    """Predict / GetModelMetadata / GetModelStatus over a ModelManager.

    `runner` executes a validated request (the batcher plugs in here); `checks` are extra
    `check(spec, arrays)` callables run after the built-in validation.
    """

    def __init__(self, manager: ModelManager, limits: Limits = Limits(),
                 runner: Runner = run_direct, checks: Iterable[Check] = ()):
        self.manager, self.limits = manager, limits
        self._runner, self._checks = runner, tuple(checks)

    # --- shared steps ---

    def resolve(self, name: str, version: int | None = None, label: str | None = None,
                signature: str | None = None) -> tuple[Servable, SignatureSpec]:
        """The servable and signature a request names (NOT_FOUND when any is unknown)."""
        servable = self.manager.get(name, self._version(name, version, label))
        signature = signature or DEFAULT_SIGNATURE
        spec = servable.specs.get(signature)
        if spec is None:
            raise not_found(f"model '{name}' version {servable.version} has no signature "
                            f"'{signature}' (signatures: {', '.join(servable.specs)})")
        return servable, spec

    def run(self, servable: Servable, spec: SignatureSpec, arrays: dict,
            output_filter: Iterable[str] = ()) -> dict[str, np.ndarray]:
        """Runs validated inputs through the extra checks and the runner; filters outputs."""
        wanted = list(output_filter)
        unknown = [k for k in wanted if k not in spec.outputs]
        if unknown:
            raise invalid(f"output_filter names unknown output {', '.join(map(repr, unknown))} "
                          f"of signature '{spec.name}' (outputs: {', '.join(spec.outputs)})")
        for check in self._checks:
            check(spec, arrays)
        outputs = self._runner(servable, spec, arrays)
        return {k: outputs[k] for k in wanted} if wanted else outputs

    def run_arrays(self, servable: Servable, spec: SignatureSpec, arrays: dict,
                   output_filter: Iterable[str] = ()) -> dict[str, np.ndarray]:
        """`run` for inputs that arrive as arrays (REST): size and signature checks first."""
        check_request_size(spec, sum(a.nbytes for a in arrays.values()),
                           {k: a.nbytes for k, a in arrays.items()}, self.limits)
        check_arrays(spec, arrays, self.limits)
        return self.run(servable, spec, arrays, output_filter)

    def _version(self, name: str, version: int | None, label: str | None) -> int | None:
        """The version a request asks for (None: the newest), labels resolved."""
        if not name:
            raise invalid("model_spec.name is required")
        return self.manager.resolve_label(name, label) if label else version

    def _from_spec(self, model_spec) -> tuple[str, int | None]:
        version = model_spec.version.value if model_spec.HasField("version") else None
        return model_spec.name, self._version(model_spec.name, version,
                                              model_spec.version_label)

    @staticmethod
    def _answer_spec(name: str, version: int, signature: str = "") -> model_pb2.ModelSpec:
        return model_pb2.ModelSpec(name=name, signature_name=signature,
                                   version=wrappers_pb2.Int64Value(value=version))

    # --- the three RPCs ---

    def predict(self, request: predict_pb2.PredictRequest) -> predict_pb2.PredictResponse:
        name, version = self._from_spec(request.model_spec)
        servable, spec = self.resolve(name, version, None, request.model_spec.signature_name)
        check_request_size(spec, request.ByteSize(),
                           {k: v.ByteSize() for k, v in request.inputs.items()}, self.limits)
        arrays = arrays_from_protos(spec, request.inputs, self.limits)
        outputs = self.run(servable, spec, arrays, request.output_filter)
        response = predict_pb2.PredictResponse(
            model_spec=self._answer_spec(name, servable.version, spec.name))
        for key, value in outputs.items():
            response.outputs[key].CopyFrom(tf.make_tensor_proto(value))
        return response

    def metadata(self, request: get_model_metadata_pb2.GetModelMetadataRequest
                 ) -> get_model_metadata_pb2.GetModelMetadataResponse:
        fields = list(request.metadata_field)
        if not fields:
            raise invalid(f"GetModelMetadataRequest must list a metadata_field "
                          f"(supported: {METADATA_FIELD})")
        unsupported = [f for f in fields if f != METADATA_FIELD]
        if unsupported:
            raise invalid(f"metadata_field {', '.join(map(repr, unsupported))} is not "
                          f"supported (supported: {METADATA_FIELD})")
        name, version = self._from_spec(request.model_spec)
        servable = self.manager.get(name, version)
        signature_map = get_model_metadata_pb2.SignatureDefMap()
        for key, signature_def in servable.signature_defs.items():
            signature_map.signature_def[key].CopyFrom(signature_def)
        response = get_model_metadata_pb2.GetModelMetadataResponse(
            model_spec=self._answer_spec(name, servable.version))
        response.metadata[METADATA_FIELD].Pack(signature_map)
        return response

    def status(self, request: get_model_status_pb2.GetModelStatusRequest
               ) -> get_model_status_pb2.GetModelStatusResponse:
        name, version = self._from_spec(request.model_spec)
        response = get_model_status_pb2.GetModelStatusResponse()
        for record in self.manager.statuses(name, version):
            response.model_version_status.add(
                version=record.version, state=record.state,
                status=status_pb2.StatusProto(error_code=record.error_code,
                                              error_message=record.error))
        return response
