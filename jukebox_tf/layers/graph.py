"""Helpers for building layers inside graphs: static-or-dynamic shapes, building a sublayer
once, and whether XLA will compile the graph being built.
"""

from __future__ import annotations

import tensorflow as tf


def build_once(layer, input_shape):
    if not layer.built:
        layer.build(input_shape)


def dims(x) -> list:
    """x's shape, static where known, else dynamic scalars."""
    dynamic = tf.shape(x)
    return [d if d is not None else dynamic[i] for i, d in enumerate(x.shape.as_list())]


def in_xla_context() -> bool:
    """Whether the graph being built will be compiled by XLA (tf.function(jit_compile=True),
    also from inside a nested function or loop body)."""
    try:
        from tensorflow.python.ops import control_flow_util
        return control_flow_util.GraphOrParentsInXlaContext(tf.compat.v1.get_default_graph())
    except (ImportError, AttributeError):  # private API: fall back to the portable path
        return False
