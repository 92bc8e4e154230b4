"""Checks every request against the signature it targets before anything runs.

Status codes (grpc.StatusCode; REST maps them to HTTP in `rest.py`):

* NOT_FOUND: unknown model, version, version label or signature (raised by the model manager
  and the service, with the same `RequestError`).
* INVALID_ARGUMENT, always naming the input: missing or unknown inputs; wrong dtype; unknown
  or wrong rank; a fixed dimension that differs; an empty tensor; a batch (dimension 0 where
  the signature leaves it open) over `Limits.max_batch_size`; more than `Limits.max_elements`
  elements; a request over `Limits.max_request_bytes` (the largest input is named); a
  TensorProto whose content does not match its shape; and the per-input rules below.

Per-input rules ("value checks") come from JSON of the form

    {"SIGNATURE": {"INPUT": {"min": 0, "max": 2047, "max_dims": [null, 8192],
                             "allow_empty": false, "allow_nonfinite": false}}}

* `min` / `max`: inclusive value range (numeric inputs), e.g. codes inside the codebook,
  seconds or tokens under a cap;
* `max_dims`: per-dimension upper bounds, `null` for none (one entry per dimension);
* `allow_empty`: accept zero-sized tensors (e.g. an optional prime of length 0);
* `allow_nonfinite`: accept NaN/Inf in float inputs (rejected by default).

A model supplies them in `assets.extra/serving_limits.json` inside its SavedModel version
(stock TF Serving ignores that file); the operator can override them per model with
`--input-limits FILE` (`{"MODEL": {same schema}}`), whose keys override the model's. For checks
that JSON cannot express, pass Python callables `check(spec, arrays)` that raise
`RequestError` (see `service.ServingCore`).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Callable, Mapping

import grpc
import numpy as np
import tensorflow as tf
from tensorflow.core.framework import types_pb2

from serving.options import Limits


class RequestError(Exception):
    """A request the server refuses: a gRPC status code and a message for the client."""

    def __init__(self, code: grpc.StatusCode, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


def invalid(message: str) -> RequestError:
    return RequestError(grpc.StatusCode.INVALID_ARGUMENT, message)


def not_found(message: str) -> RequestError:
    return RequestError(grpc.StatusCode.NOT_FOUND, message)


# --- per-input rules ----------------------------------------------------------------------

RULE_KEYS = {"min": (int, float), "max": (int, float), "max_dims": list,
             "allow_empty": bool, "allow_nonfinite": bool}


@dataclasses.dataclass(frozen=True)
class InputRule:
    min: float | None = None
    max: float | None = None
    max_dims: tuple | None = None
    allow_empty: bool = False
    allow_nonfinite: bool = False


def parse_rules(obj, where: str) -> dict[str, dict[str, dict]]:
    """Checks rules JSON ({signature: {input: {key: value}}}) and returns it as plain dicts."""
    if not isinstance(obj, dict):
        raise ValueError(f"{where}: expected an object of signatures")
    for sig, inputs in obj.items():
        if not isinstance(inputs, dict):
            raise ValueError(f"{where}: signature {sig!r}: expected an object of inputs")
        for name, rule in inputs.items():
            if not isinstance(rule, dict):
                raise ValueError(f"{where}: {sig}.{name}: expected an object")
            for key, value in rule.items():
                kinds = RULE_KEYS.get(key)
                if kinds is None:
                    raise ValueError(f"{where}: {sig}.{name}: unknown key {key!r} "
                                     f"(known: {', '.join(RULE_KEYS)})")
                # bool is an int subclass: keep True out of min/max.
                if not isinstance(value, kinds) or (kinds is not bool and isinstance(value, bool)):
                    raise ValueError(f"{where}: {sig}.{name}.{key}: bad value {value!r}")
            if "max_dims" in rule and not all(
                    d is None or (isinstance(d, int) and d >= 0) for d in rule["max_dims"]):
                raise ValueError(f"{where}: {sig}.{name}.max_dims: entries must be "
                                 "non-negative integers or null")
    return obj


def merge_rules(base: dict, override: dict) -> dict:
    """Rules with `override`'s keys replacing `base`'s, input by input."""
    merged = {sig: {name: dict(rule) for name, rule in inputs.items()}
              for sig, inputs in base.items()}
    for sig, inputs in override.items():
        for name, rule in inputs.items():
            merged.setdefault(sig, {}).setdefault(name, {}).update(rule)
    return merged


# --- signatures ---------------------------------------------------------------------------


def dtype_name(enum: int) -> str:
    try:
        return tf.as_dtype(enum).name
    except TypeError:
        return types_pb2.DataType.Name(enum) if enum in types_pb2.DataType.values() else str(enum)


def shape_text(shape) -> str:
    if shape is None:
        return "[unknown rank]"
    return "[" + ", ".join("?" if d is None else str(d) for d in shape) + "]"


@dataclasses.dataclass(frozen=True)
class TensorSpec:
    """One signature input or output: dtype, shape (None = unknown rank, dims None = open)."""

    name: str
    dtype: tf.DType
    shape: tuple | None
    rule: InputRule = InputRule()

    @classmethod
    def from_tensor_info(cls, name, info, rule: dict | None = None) -> "TensorSpec":
        shape = None if info.tensor_shape.unknown_rank else tuple(
            None if d.size < 0 else d.size for d in info.tensor_shape.dim)
        rule = dict(rule or {})
        if "max_dims" in rule:
            rule["max_dims"] = tuple(rule["max_dims"])
            if shape is not None and len(rule["max_dims"]) != len(shape):
                raise ValueError(f"input {name!r}: max_dims has {len(rule['max_dims'])} "
                                 f"entries for a rank-{len(shape)} input")
        dtype = tf.as_dtype(info.dtype)
        if ("min" in rule or "max" in rule) and not (dtype.is_integer or dtype.is_floating):
            raise ValueError(f"input {name!r}: min/max need a numeric input, not {dtype.name}")
        return cls(name, dtype, shape, InputRule(**rule))

    def describe(self) -> str:
        return f"{self.dtype.name}{shape_text(self.shape)}"


@dataclasses.dataclass(frozen=True)
class SignatureSpec:
    """What a signature accepts and returns, plus its per-input rules."""

    name: str
    inputs: dict
    outputs: dict

    @classmethod
    def from_signature_def(cls, name, sig_def, rules: dict | None = None) -> "SignatureSpec":
        rules = rules or {}
        unknown = sorted(set(rules) - set(sig_def.inputs))
        if unknown:
            raise ValueError(f"signature {name!r}: rules name unknown inputs {unknown}")
        inputs = {k: TensorSpec.from_tensor_info(k, v, rules.get(k))
                  for k, v in sorted(sig_def.inputs.items())}
        outputs = {k: TensorSpec.from_tensor_info(k, v) for k, v in sorted(sig_def.outputs.items())}
        return cls(name, inputs, outputs)

    def batched(self) -> bool:
        """True when every input and output has an open dimension 0 (batching may merge)."""
        specs = list(self.inputs.values()) + list(self.outputs.values())
        return bool(self.inputs) and all(s.shape and s.shape[0] is None for s in specs)


# --- checks -------------------------------------------------------------------------------

Check = Callable[[SignatureSpec, Mapping[str, np.ndarray]], None]


def _where(spec: SignatureSpec, name: str) -> str:
    return f"input '{name}' of signature '{spec.name}'"


def check_names(spec: SignatureSpec, names) -> None:
    """Missing or unknown input names."""
    names = set(names)
    expected = ", ".join(spec.inputs) or "no inputs"
    missing = [n for n in spec.inputs if n not in names]
    if missing:
        raise invalid(f"missing input {', '.join(map(repr, missing))} for signature "
                      f"'{spec.name}' (expects {expected})")
    extra = sorted(names - set(spec.inputs))
    if extra:
        raise invalid(f"unknown input {', '.join(map(repr, extra))} for signature "
                      f"'{spec.name}' (expects {expected})")


def check_header(spec: SignatureSpec, name: str, dtype_enum: int, shape: tuple,
                 limits: Limits) -> None:
    """Dtype, rank, fixed dims, emptiness, batch, element count and max_dims of one input."""
    inp, where = spec.inputs[name], _where(spec, name)
    if dtype_enum != inp.dtype.as_datatype_enum:
        raise invalid(f"{where}: expected dtype {inp.dtype.name}, got {dtype_name(dtype_enum)}")
    if inp.shape is not None:
        if len(shape) != len(inp.shape):
            raise invalid(f"{where}: expected rank {len(inp.shape)} {inp.describe()}, got "
                          f"rank {len(shape)} {shape_text(shape)}")
        for axis, (want, got) in enumerate(zip(inp.shape, shape)):
            if want is not None and want != got:
                raise invalid(f"{where}: dimension {axis} must be {want} "
                              f"{inp.describe()}, got {shape_text(shape)}")
    if 0 in shape and not inp.rule.allow_empty:
        raise invalid(f"{where}: empty tensor {shape_text(shape)}")
    open_batch = inp.shape is None or (inp.shape and inp.shape[0] is None)
    if shape and open_batch and shape[0] > limits.max_batch_size:
        raise invalid(f"{where}: batch size {shape[0]} is over the limit "
                      f"{limits.max_batch_size}")
    elements = math.prod(shape)
    if elements > limits.max_elements:
        raise invalid(f"{where}: {elements} elements {shape_text(shape)}, over the limit "
                      f"{limits.max_elements}")
    for axis, (cap, got) in enumerate(zip(inp.rule.max_dims or (), shape)):
        if cap is not None and got > cap:
            raise invalid(f"{where}: dimension {axis} is {got}, over the limit {cap}")


def check_values(spec: SignatureSpec, name: str, array: np.ndarray) -> None:
    """The value rules of one decoded input: finiteness and the [min, max] range."""
    inp, where = spec.inputs[name], _where(spec, name)
    if array.size == 0:
        return
    rule = inp.rule
    if inp.dtype.is_floating and not rule.allow_nonfinite and not np.isfinite(array).all():
        index = tuple(int(i) for i in np.argwhere(~np.isfinite(array))[0])
        raise invalid(f"{where}: non-finite value {array[index]} at index {index}")
    if rule.min is None and rule.max is None:
        return
    low = -np.inf if rule.min is None else rule.min
    high = np.inf if rule.max is None else rule.max
    bad = (array < low) | (array > high)
    if bad.any():
        index = tuple(int(i) for i in np.argwhere(bad)[0])
        raise invalid(f"{where}: value {array[index]} at index {index} is outside "
                      f"[{low}, {high}]")


def check_request_size(spec: SignatureSpec, total_bytes: int, sizes: Mapping[str, int],
                       limits: Limits) -> None:
    if total_bytes > limits.max_request_bytes:
        largest = max(sizes, key=sizes.get) if sizes else None
        named = f"; largest input '{largest}' ({sizes[largest]} bytes)" if largest else ""
        raise invalid(f"request for signature '{spec.name}' is {total_bytes} bytes, over the "
                      f"limit {limits.max_request_bytes}{named}")


def arrays_from_protos(spec: SignatureSpec, protos, limits: Limits) -> dict[str, np.ndarray]:
    """Validates a Predict request's TensorProtos and decodes them; shapes are checked before
    the content is decoded, so an oversized tensor costs nothing."""
    check_names(spec, protos.keys())
    arrays = {}
    for name in spec.inputs:
        proto, where = protos[name], _where(spec, name)
        if proto.tensor_shape.unknown_rank or any(d.size < 0 for d in proto.tensor_shape.dim):
            raise invalid(f"{where}: the tensor shape must be fully defined")
        shape = tuple(d.size for d in proto.tensor_shape.dim)
        check_header(spec, name, proto.dtype, shape, limits)
        if proto.tensor_content:
            expected = math.prod(shape) * spec.inputs[name].dtype.size
            if len(proto.tensor_content) != expected:
                raise invalid(f"{where}: tensor_content has {len(proto.tensor_content)} bytes, "
                              f"{shape_text(shape)} {dtype_name(proto.dtype)} needs {expected}")
        try:
            array = tf.make_ndarray(proto)
        except Exception as e:  # noqa: BLE001 - any decoding failure is the client's tensor
            raise invalid(f"{where}: malformed TensorProto {shape_text(shape)}: {e}") from None
        check_values(spec, name, array)
        arrays[name] = array
    return arrays


def check_arrays(spec: SignatureSpec, arrays: Mapping[str, np.ndarray], limits: Limits) -> None:
    """The same checks for inputs that arrive already decoded (REST), in the spec's dtype."""
    check_names(spec, arrays.keys())
    for name, array in arrays.items():
        check_header(spec, name, spec.inputs[name].dtype.as_datatype_enum, array.shape, limits)
        check_values(spec, name, array)
