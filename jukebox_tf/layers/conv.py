"""Lean 1-D convolutions: Keras layers over `tf.nn` ops.

Same weights and 'same' padding as keras.layers.Conv1D / Conv1DTranspose (kernel
[k, in, out], resp. [k, out, in], plus bias), but a dozen graph ops per call instead of Keras
3's 73 (its padding arithmetic), which made tracing the VQ-VAE's train step take minutes.
Shapes: [batch, time, channels], or [batch, 1, time, channels] ("time as width"): the VQ-VAE's
encoders and decoders run 4-D, because grappler then fuses a conv with its bias and a following
ReLU into one oneDNN op, where a 3-D conv1d's squeeze between them lets only the bias fuse.

Dilated float32 convs get their filter gradient from `_dilated_filter_grad`: oneDNN's
float32 backward-weights kernel for dilated 1-D convs with 32 channels took 60% of the VQ-VAE's
train step, about 2.5x the time of the same conv undilated (benchmarks/vqvae.py). Its bfloat16
kernel (mixed precision, AMX) has no such penalty, and the train step is 6% faster with it than
with the fold. (1x1 convs as matmuls were measured too: no faster in either precision.)

Where TensorFlow runs without oneDNN (its default on x86 CPUs without AVX-512 VNNI/BF16 or AMX,
such as AVX2-only AMD EPYC and most laptops), the CPU's backward conv kernels reject dilation
outright, so there both gradients of every dilated conv are taken in the folded form.
"""

from __future__ import annotations

import keras
import tensorflow as tf
from tensorflow.python.util import _pywrap_util_port

from jukebox_tf.layers import PACKAGE

ONEDNN = _pywrap_util_port.IsMklEnabled()  # TF_ENABLE_ONEDNN_OPTS, else the CPU's features


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
    """'same'-padded conv: [B, T, I] -> [B, ceil(T / strides), filters]; 4-D inputs
    [B, 1, T, I] give [B, 1, ceil(T / strides), filters]."""

    def build(self, input_shape):
        self._add_params((self.kernel_size, input_shape[-1], self.filters))
        super().build(input_shape)

    def compute_output_shape(self, input_shape):
        steps = input_shape[1]
        steps = None if steps is None else -(-steps // self.strides)
        return (input_shape[0], steps, self.filters)

    def call(self, x):
        if x.shape.rank == 3:
            return tf.squeeze(self.call(tf.expand_dims(x, 1)), 1)
        kernel = tf.cast(self.kernel, x.dtype)[None]
        if (self.dilation_rate > 1 and self.strides == 1 and self.kernel_size % 2
                and (x.dtype == tf.float32 or not ONEDNN)):
            y = _dilated_conv(x, kernel, self.dilation_rate)
        else:
            y = tf.nn.conv2d(x, kernel, [1, 1, self.strides, 1], "SAME",
                             dilations=[1, 1, self.dilation_rate, 1])
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
    input: x, grad [B, T, C]; kernel [1, k, I, O]."""
    _, k, n_in, n_out = kernel_shape
    folded = tf.raw_ops.Conv2DBackpropFilter(
        input=_fold(x, dilation), filter_sizes=[k, 1, n_in, n_out],
        out_backprop=_fold(grad, dilation), strides=[1, 1, 1, 1], padding="SAME")
    return tf.reshape(folded, kernel_shape)


def _dilated_input_grad(grad, kernel, length, dilation: int):
    """d(loss)/d(x) [B, length, I] of a 'same' stride-1 dilated conv, as the undilated one of
    the folded gradient: grad [B, T, O]; kernel [1, k, I, O]."""
    folded = _fold(grad, dilation)
    shape = tf.shape(folded)
    _, k, n_in, n_out = kernel.shape
    x = tf.raw_ops.Conv2DBackpropInput(
        input_sizes=tf.stack([shape[0], shape[1], dilation, n_in]),
        filter=tf.reshape(kernel, [k, 1, n_in, n_out]), out_backprop=folded,
        strides=[1, 1, 1, 1], padding="SAME")
    return tf.reshape(x, [shape[0], -1, n_in])[:, :length]


def _dilated_conv(x, kernel, dilation: int):
    """The 'same' stride-1 conv of x [B, 1, T, I] by kernel [1, k, I, O], dilated along T, with
    a faster filter gradient (and, without oneDNN, an input gradient that runs at all)."""
    dilations = [1, 1, dilation, 1]

    @tf.custom_gradient
    def conv(x, kernel):
        def grad(g):
            if ONEDNN:
                grad_x = tf.nn.conv2d_transpose(g, kernel, tf.shape(x), 1, "SAME",
                                                dilations=dilations)
            else:
                grad_x = _dilated_input_grad(tf.squeeze(g, 1), kernel, tf.shape(x)[2],
                                             dilation)[:, None]
            # Eigen's half-precision filter gradient sums B x T products in bfloat16: 3% off.
            wide = tf.float32 if not ONEDNN else x.dtype
            grad_kernel = _dilated_filter_grad(tf.cast(tf.squeeze(x, 1), wide),
                                               tf.cast(tf.squeeze(g, 1), wide), kernel.shape,
                                               dilation)
            return grad_x, tf.cast(grad_kernel, kernel.dtype)

        return tf.nn.conv2d(x, kernel, 1, "SAME", dilations=dilations), grad

    return conv(x, kernel)


@keras.saving.register_keras_serializable(PACKAGE)
class Conv1DTranspose(_Conv):
    """'same'-padded transposed conv: [B, T, I] -> [B, T * strides, filters]; 4-D inputs
    [B, 1, T, I] give [B, 1, T * strides, filters]."""

    def build(self, input_shape):
        self._add_params((self.kernel_size, self.filters, input_shape[-1]))
        super().build(input_shape)

    def compute_output_shape(self, input_shape):
        steps = input_shape[1]
        return (input_shape[0], None if steps is None else steps * self.strides, self.filters)

    def call(self, x):
        if x.shape.rank == 3:
            return tf.squeeze(self.call(tf.expand_dims(x, 1)), 1)
        kernel, bias = tf.cast(self.kernel, x.dtype), tf.cast(self.bias, x.dtype)
        shape = tf.shape(x)
        if self.kernel_size == 2 * self.strides:
            y = tf.nn.conv2d(x, _phase_kernel(kernel, self.strides)[None], 1, "SAME")
            y = tf.nn.bias_add(y, tf.tile(bias, [self.strides]))
            return tf.reshape(y, [shape[0], 1, shape[2] * self.strides, self.filters])
        out_shape = tf.stack([shape[0], 1, shape[2] * self.strides, self.filters])
        y = tf.nn.conv2d_transpose(x, kernel[None], out_shape, [1, 1, self.strides, 1], "SAME")
        return tf.nn.bias_add(y, bias)


def _phase_kernel(kernel, stride: int):
    """The k=3 conv kernel [3, I, stride * O] equal to a 'same' transposed conv of kernel
    [2 * stride, O, I]: output phase p (sample stride*t + p, channels p*O .. p*O + O-1) reads
    inputs t-1, t, t+1 through taps p + stride//2 - stride*d, d = -1, 0, 1 (those in range).

    As a forward conv, the bias fuses into it and oneDNN's forward kernels run it: the
    transposed conv and its unfused bias were 18% of a float32 level-0 decode's op time."""
    n_out, n_in = kernel.shape[1], kernel.shape[2]
    zeros = tf.zeros([n_in, n_out], kernel.dtype)
    taps = []
    for d in (-1, 0, 1):
        phases = []
        for p in range(stride):
            tap = p + stride // 2 - stride * d
            phases.append(tf.transpose(kernel[tap]) if 0 <= tap < 2 * stride else zeros)
        taps.append(tf.concat(phases, axis=1))
    return tf.stack(taps)
