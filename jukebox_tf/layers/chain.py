"""`LayerChain`: a layer that applies a list of sublayers in order, built from shapes alone.

Keras 3 builds a nested layer that has no `build()` by tracing its `call` symbolically; with
the VQ-VAE's dozens of nested conv blocks that took seconds per model. Every composite layer
of the VQ-VAE is a chain and builds its sublayers from shapes instead.
"""

from __future__ import annotations

import keras
import tensorflow as tf


def build_chain(layers, input_shape) -> tuple:
    """Builds layers applied in sequence; returns the output shape."""
    shape = tuple(input_shape)
    for layer in layers:
        if not layer.built:
            layer.build(shape)
        shape = tuple(layer.compute_output_shape(shape))
    return shape


class LayerChain(keras.layers.Layer):
    """Subclasses set `self.config_args` (their constructor arguments, for get_config) and
    return their sublayers, in application order, from `chain()`. With `time_as_width`, the
    chain takes and returns [B, T, C] but runs its sublayers on [B, 1, T, C], where grappler
    fuses each conv with its bias and ReLU (conv.py)."""

    config_args: dict = {}
    time_as_width = False

    def chain(self) -> list:
        raise NotImplementedError

    def build(self, input_shape):
        build_chain(self.chain(), input_shape)
        super().build(input_shape)

    def compute_output_shape(self, input_shape):
        shape = tuple(input_shape)
        for layer in self.chain():
            shape = tuple(layer.compute_output_shape(shape))
        return shape

    def call(self, x):
        if self.time_as_width:
            x = tf.expand_dims(x, 1)
        for layer in self.chain():
            x = layer(x)
        return tf.squeeze(x, 1) if self.time_as_width else x

    def get_config(self):
        return super().get_config() | self.config_args
