"""Lean 1-D convolutions for the VQ-VAE: Keras layers over `tf.nn` ops.

Same weights and 'same' padding as keras.layers.Conv1D / Conv1DTranspose (kernel
[k, in, out], resp. [k, out, in], plus bias), but 14 graph ops per call instead of Keras 3's
73 (its padding arithmetic), which made tracing the VQ-VAE's train step take minutes.
Shapes: [batch, time, channels].

Dilated float32 convs get their filter gradient from `_dilated_filter_grad`: oneDNN's
float32 backward-weights kernel for dilated 1-D convs with 32 channels took 60% of the VQ-VAE's
train step, about 2.5x the time of the same conv undilated (benchmarks/vqvae.py). Its bfloat16
kernel (mixed precision, AMX) has no such penalty, and the train step is 6% faster with it than
with the fold. (1x1 convs as matmuls were measured too: no faster in either precision.)
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
        kernel = tf.cast(self.kernel, x.dtype)
        if (self.dilation_rate > 1 and self.strides == 1 and self.kernel_size % 2
                and x.dtype == tf.float32):
            y = _dilated_conv1d(x, kernel, self.dilation_rate)
        else:
            y = tf.nn.conv1d(x, kernel, self.strides, "SAME", dilations=self.dilation_rate)
        return tf.nn.bias_add(y, tf.cast(self.bias, x.dtype))


def _fold(x, dilation: int):
    """[B, T, C] -> [B, ceil(T / d), d, C], zero-padded: row h holds samples h*d .. h*d + d-1,
    so a dilated conv along T is an undilated conv along the rows."""
    shape = tf.shape(x)
    pad = -shape[1] % dilation
    x = tf.pad(x, [[0, 0], [0, pad], [0, 0]])
    return tf.reshape(x, [shape[0], -1, dilation, x.shape[-1]])


def _dilated_filter_grad(x, grad, kernel_shape, dilation: int):
    """d(loss)/d(kernel) of a 'same' stride-1 dilated conv, as the undilated conv of the folded
    input: kernel [k, I, O]."""
    k, n_in, n_out = kernel_shape
    folded = tf.raw_ops.Conv2DBackpropFilter(
        input=_fold(x, dilation), filter_sizes=[k, 1, n_in, n_out],
        out_backprop=_fold(grad, dilation), strides=[1, 1, 1, 1], padding="SAME")
    return tf.reshape(folded, kernel_shape)


def _dilated_conv1d(x, kernel, dilation: int):
    """tf.nn.conv1d(x, kernel, 1, 'SAME', dilations=dilation) with a faster filter gradient."""

    @tf.custom_gradient
    def conv(x, kernel):
        def grad(g):
            grad_x = tf.nn.conv1d_transpose(g, kernel, tf.shape(x), 1, "SAME",
                                            dilations=dilation)
            return grad_x, _dilated_filter_grad(x, g, kernel.shape, dilation)

        return tf.nn.conv1d(x, kernel, 1, "SAME", dilations=dilation), grad

    return conv(x, kernel)


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
