"""One loaded SavedModel version: its signature defs, validation specs and a session that runs
its signatures as C++ TF Serving runs them."""

from __future__ import annotations

import json
import os
import re

import grpc
import numpy as np
import tensorflow as tf
from google.protobuf import text_format
from tensorflow.core.protobuf import saved_model_pb2

from serving.saved_model_session import OP_SIGNATURES, compiled_signatures, open_session
from serving.validation import RequestError, SignatureSpec, invalid, merge_rules, parse_rules

SERVE_TAG = "serve"  # the MetaGraph tag stock TF Serving loads
LIMITS_FILE = os.path.join("assets.extra", "serving_limits.json")
_CODES = {code.value[0]: code for code in grpc.StatusCode}


def read_meta_graph(path: str):
    """The `serve`-tagged MetaGraphDef of a SavedModel directory, read without loading it."""
    pb, pbtxt = os.path.join(path, "saved_model.pb"), os.path.join(path, "saved_model.pbtxt")
    saved = saved_model_pb2.SavedModel()
    if tf.io.gfile.exists(pb):
        with tf.io.gfile.GFile(pb, "rb") as f:
            saved.ParseFromString(f.read())
    else:
        with tf.io.gfile.GFile(pbtxt, "r") as f:
            text_format.Parse(f.read(), saved)
    for meta_graph in saved.meta_graphs:
        if SERVE_TAG in meta_graph.meta_info_def.tags:
            return meta_graph
    raise ValueError(f"{path}: no MetaGraph tagged {SERVE_TAG!r}")


def read_model_rules(path: str) -> dict:
    """The model's own per-input rules (validation.py), {} when it ships none."""
    limits = os.path.join(path, LIMITS_FILE)
    if not tf.io.gfile.exists(limits):
        return {}
    with tf.io.gfile.GFile(limits, "r") as f:
        try:
            obj = json.load(f)
        except json.JSONDecodeError as e:
            raise ValueError(f"{LIMITS_FILE}: not valid JSON: {e}") from None
    return parse_rules(obj, LIMITS_FILE)


def short_tf_message(message: str) -> str:
    """The cause of a TensorFlow runtime error without its graph-location boilerplate."""
    noise = ("[[", "Graph execution error", "Detected at node", "<stack traces", "File ")
    lines = [line.strip() for line in message.splitlines()]
    text = " ".join(line for line in lines if line and not line.startswith(noise))
    return re.sub(r"\s*\[Op:[^\]]*\]$", "", text) or message


class Servable:
    """A SavedModel version ready to run in a session of its own, as C++ TF Serving runs it;
    `run` is safe to call from many threads (so is Session.run)."""

    def __init__(self, path: str, version: int, extra_rules: dict | None = None,
                 xla: bool = True):
        self.path, self.version, self.xla = path, version, xla
        meta_graph = read_meta_graph(path)
        # All signature defs, as stock GetModelMetadata reports them (init op included);
        # copies, so that the MetaGraphDef (the whole graph) is not kept alive by them.
        self.signature_defs = {name: _copy(sig) for name, sig in meta_graph.signature_def.items()}
        names = sorted(set(self.signature_defs) - set(OP_SIGNATURES))
        self.compiled = compiled_signatures(meta_graph, names)
        rules = merge_rules(read_model_rules(path), self._known(extra_rules or {}))
        unknown = sorted(set(rules) - set(names))
        if unknown:
            raise ValueError(f"{LIMITS_FILE}: rules name unknown signatures {unknown}")
        self.specs = {name: SignatureSpec.from_signature_def(name, self.signature_defs[name],
                                                             rules.get(name))
                      for name in names}
        # Tensor names per signature, read once (indexing a proto map adds missing keys).
        self._feeds = {name: {k: v.name for k, v in self.signature_defs[name].inputs.items()}
                       for name in names}
        self._fetches = {name: sorted((k, v.name) for k, v in
                                      self.signature_defs[name].outputs.items())
                         for name in names}
        # Last: a version whose rules do not fit fails before its variables are read.
        self._session = open_session(path, meta_graph)

    def _known(self, rules: dict) -> dict:
        """Operator rules limited to this version's signatures and inputs (versions differ)."""
        return {sig: {k: v for k, v in inputs.items() if k in self.signature_defs[sig].inputs}
                for sig, inputs in rules.items()
                if sig in self.signature_defs and sig not in OP_SIGNATURES}

    def run(self, signature: str, arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Runs a validated request; TensorFlow errors come back as RequestError."""
        spec, feed_names, fetches = (self.specs[signature], self._feeds[signature],
                                     self._fetches[signature])
        if signature in self.compiled and not self.xla:
            # Stock TF Serving's answer to a jit_compile function when XLA is off.
            raise RequestError(grpc.StatusCode.INTERNAL, f"signature '{signature}': XLA "
                               f"compilation disabled (this server runs with --no-xla)")
        try:
            values = self._session.run([tensor for _, tensor in fetches],
                                       {feed_names[k]: v for k, v in arrays.items()})
            # Scalars come back as numpy scalars or bytes: keep every output an ndarray.
            return {k: np.asarray(v, dtype=object if spec.outputs[k].dtype == tf.string
                                  else None) for (k, _), v in zip(fetches, values)}
        except tf.errors.OpError as e:
            # e.g. inputs whose batch sizes disagree: the client's fault, said in TF's words.
            code = _CODES.get(e.error_code, grpc.StatusCode.INTERNAL)
            raise RequestError(code, f"signature '{signature}': {short_tf_message(e.message)}"
                               ) from None
        except (TypeError, ValueError) as e:
            raise invalid(f"signature '{signature}': {e}") from None


def _copy(message):
    copy = type(message)()
    copy.CopyFrom(message)
    return copy
