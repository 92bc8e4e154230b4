"""One loaded SavedModel version: its signature defs, validation specs and callable signatures."""

from __future__ import annotations

import json
import os
import re

import grpc
import numpy as np
import tensorflow as tf
from google.protobuf import text_format
from tensorflow.core.protobuf import saved_model_pb2

from jukebox_tf.training.checkpoints import restore_variables
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


def load_saved_model(path: str):
    """`tf.saved_model.load` in about the model's size: TF's own load reads every variable
    before it assigns any (twice the model at the peak, 24 GB for the full-size hierarchy), so
    the variables are restored one at a time instead."""
    options = tf.saved_model.LoadOptions(experimental_skip_checkpoint=True)
    loaded = tf.saved_model.load(path, tags=[SERVE_TAG], options=options)
    restore_variables(loaded, os.path.join(path, tf.saved_model.VARIABLES_DIRECTORY,
                                           tf.saved_model.VARIABLES_FILENAME),
                      advice="Export this version again.")
    return loaded


def _compiles(function) -> bool:
    """Whether a loaded signature calls a function compiled with XLA (jit_compile=True)."""
    library = function.graph.as_graph_def().library
    return any(f.attr["_XlaMustCompile"].b for f in library.function)


class Servable:
    """A SavedModel version ready to run; `run` is safe to call from many threads."""

    def __init__(self, path: str, version: int, extra_rules: dict | None = None,
                 xla: bool = True):
        self.path, self.version, self.xla = path, version, xla
        meta_graph = read_meta_graph(path)
        # All signature defs, as stock GetModelMetadata reports them (init op included).
        self.signature_defs = dict(meta_graph.signature_def)
        self._loaded = load_saved_model(path)
        self._functions = dict(self._loaded.signatures)
        self.compiled = frozenset(name for name, fn in self._functions.items()
                                  if _compiles(fn))
        rules = merge_rules(read_model_rules(path), self._known(extra_rules or {}))
        unknown = sorted(set(rules) - set(self._functions))
        if unknown:
            raise ValueError(f"{LIMITS_FILE}: rules name unknown signatures {unknown}")
        self.specs = {name: SignatureSpec.from_signature_def(name, self.signature_defs[name],
                                                             rules.get(name))
                      for name in sorted(self._functions)}

    def _known(self, rules: dict) -> dict:
        """Operator rules limited to this version's signatures and inputs (versions differ)."""
        return {sig: {k: v for k, v in inputs.items() if k in self.signature_defs[sig].inputs}
                for sig, inputs in rules.items() if sig in self._functions}

    def run(self, signature: str, arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Runs a validated request; TensorFlow errors come back as RequestError."""
        spec = self.specs[signature]
        if signature in self.compiled and not self.xla:
            # Stock TF Serving's answer to a jit_compile function when XLA is off.
            raise RequestError(grpc.StatusCode.INTERNAL, f"signature '{signature}': XLA "
                               f"compilation disabled (this server runs with --no-xla)")
        try:
            feeds = {k: tf.convert_to_tensor(v, spec.inputs[k].dtype) for k, v in arrays.items()}
            outputs = self._functions[signature](**feeds)
            # Scalars come back as numpy scalars or bytes: keep every output an ndarray.
            return {k: np.asarray(v.numpy(), dtype=object if v.dtype == tf.string else None)
                    for k, v in outputs.items()}
        except tf.errors.OpError as e:
            # e.g. inputs whose batch sizes disagree: the client's fault, said in TF's words.
            code = _CODES.get(e.error_code, grpc.StatusCode.INTERNAL)
            raise RequestError(code, f"signature '{signature}': {short_tf_message(e.message)}"
                               ) from None
        except (TypeError, ValueError) as e:
            raise invalid(f"signature '{signature}': {e}") from None
