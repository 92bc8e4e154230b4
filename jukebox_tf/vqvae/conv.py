"""Lean 1-D convolutions for the VQ-VAE: Keras layers over `tf.nn` ops.

Same weights and 'same' padding as keras.layers.Conv1D / Conv1DTranspose (kernel
[k, in, out], resp. [k, out, in], plus bias), but:
  * 14 graph ops per call instead of Keras 3's 73 (its padding arithmetic), which made tracing
    the VQ-VAE's train step take minutes;
  * dilated convolutions get a hand-written gradient: TF's CPU filter gradient for dilation > 1
    is several times slower than the forward pass, while the filter gradient is one matmul of
    the im2col'd input with the output gradient, and the input gradient is a dilated conv with
    the flipped, transposed kernel.
Shapes: [batch, time, channels].
"""

from __future__ import annotations

import keras
import tensorflow as tf

PACKAGE = "jukebox_tf"  # Keras serialization namespace of the project's layers


def _dilated_conv(x, kernel, dilation: int):
    """Stride-1 'same' conv with odd kernel size k and dilation d: [B, T, I] -> [B, T, O]."""

    @tf.custom_gradient
    def conv(x, kernel):
        y = tf.nn.conv1d(x, kernel, 1, "SAME", dilations=dilation)

        def grad(dy):
            k, i, o = kernel.shape
            flipped = tf.transpose(tf.reverse(kernel, [0]), [0, 2, 1])  # [k, O, I]
            dx = tf.nn.conv1d(dy, flipped, 1, "SAME", dilations=dilation)
            half = (k // 2) * dilation
            padded = tf.pad(x, [[0, 0], [half, half], [0, 0]])
            steps = tf.shape(x)[1]
            cols = tf.concat([padded[:, j * dilation:j * dilation + steps] for j in range(k)], -1)
            dk = tf.matmul(tf.reshape(cols, [-1, k * i]), tf.reshape(dy, [-1, o]),
                           transpose_a=True)
            return dx, tf.reshape(dk, [k, i, o])

        return y, grad

    return conv(x, kernel)


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
        if self.kernel_size == 1 and self.strides == 1:
            y = tf.matmul(x, kernel[0])  # a 1x1 conv is a matmul; cheaper than Conv2D here
        elif self.dilation_rate > 1 and self.strides == 1 and self.kernel_size % 2 == 1:
            y = _dilated_conv(x, kernel, self.dilation_rate)
        else:
            y = tf.nn.conv1d(x, kernel, self.strides, "SAME", dilations=self.dilation_rate)
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
