"""Lean 1-D convolutions for the VQ-VAE: Keras layers over `tf.nn` ops.

Same weights and 'same' padding as keras.layers.Conv1D / Conv1DTranspose (kernel
[k, in, out], resp. [k, out, in], plus bias), but 14 graph ops per call instead of Keras 3's
73 (its padding arithmetic), which made tracing the VQ-VAE's train step take minutes. (A
hand-written dilated-conv gradient and 1x1 convs as matmuls were measured too: no faster.)
Shapes: [batch, time, channels].
"""

from __future__ import annotations

import keras
import tensorflow as tf

PACKAGE = "jukebox_tf"  # Keras serialization namespace of the project's layers


class _Conv(keras.layers.Layer):
    def __init__(self, filters: int, kernel_size: int, strides: int = 1, dilation_rate: int = 1,
                 **kwargs):
        super().__init__(**kwargs)
        self.filters, self.kernel_size = filters, kernel_size
        self.strides, self.dilation_rate = strides, dilation_rate

    def _add_params(self, kernel_shape):
        self.kernel = self.add_weight(name="kernel", shape=kernel_shape,
                                      initializer="glorot_uniform")
        self.bias = self.add_weight(name="bias", shape=(self.filters,), initializer="zeros")

    def get_config(self):
        return super().get_config() | {"filters": self.filters, "kernel_size": self.kernel_size,
                                       "strides": self.strides,
                                       "dilation_rate": self.dilation_rate}


@keras.saving.register_keras_serializable(PACKAGE)
class Conv1D(_Conv):
    """'same'-padded conv: [B, T, I] -> [B, ceil(T / strides), filters]."""

    def build(self, input_shape):
        self._add_params((self.kernel_size, input_shape[-1], self.filters))
        super().build(input_shape)

    def compute_output_shape(self, input_shape):
        steps = input_shape[1]
        steps = None if steps is None else -(-steps // self.strides)
        return (input_shape[0], steps, self.filters)

    def call(self, x):
        y = tf.nn.conv1d(x, tf.cast(self.kernel, x.dtype), self.strides, "SAME",
                         dilations=self.dilation_rate)
        return tf.nn.bias_add(y, tf.cast(self.bias, x.dtype))


@keras.saving.register_keras_serializable(PACKAGE)
class Conv1DTranspose(_Conv):
    """'same'-padded transposed conv: [B, T, I] -> [B, T * strides, filters]."""

    def build(self, input_shape):
        self._add_params((self.kernel_size, self.filters, input_shape[-1]))
        super().build(input_shape)

    def compute_output_shape(self, input_shape):
        steps = input_shape[1]
        return (input_shape[0], None if steps is None else steps * self.strides, self.filters)

    def call(self, x):
        shape = tf.shape(x)
        out_shape = tf.stack([shape[0], shape[1] * self.strides, self.filters])
        y = tf.nn.conv1d_transpose(x, tf.cast(self.kernel, x.dtype), out_shape, self.strides,
                                   "SAME")
        return tf.nn.bias_add(y, tf.cast(self.bias, x.dtype))
