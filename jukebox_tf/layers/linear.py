"""The transformer's linear layer and layer norm: Keras Dense and LayerNormalization with the
same weights, computed as 2-D matrix products that XLA on a CPU hands to oneDNN, and a layer
norm that a following Linear folds into its own kernel and bias.
"""

from __future__ import annotations

import keras
import tensorflow as tf

from jukebox_tf.layers import PACKAGE
from jukebox_tf.layers.graph import dims


# Rows of ones in the matrix products that sum rows (sum_rows): XLA on a CPU hands a product
# with 16 rows to oneDNN, but keeps a one-row product on its own dot emitter, which first
# converts bfloat16 operands to float32 and fuses the operand's producer into that conversion
# (computing, for c_attn's bias, the query/key/value gradient concatenation a second time).
_SUM_ROWS = 16


def sum_rows(x) -> tf.Tensor:
    """x [..., C] summed over every leading axis -> [C] (x's dtype), as one matrix product:
    XLA on a CPU otherwise splits such a sum over thousands of rows into a reduce-window it
    runs as a slow scalar loop (a few ms for every bias of a step)."""
    flat = tf.reshape(x, [-1, x.shape[-1]])
    ones = tf.ones([_SUM_ROWS, tf.shape(flat)[0]], flat.dtype)
    return tf.matmul(ones, flat)[0]


@tf.custom_gradient
def broadcast_rows(v, shape):
    """v [C] broadcast to `shape` [..., C], its gradient summed by sum_rows."""

    def grad(dy):
        return tf.cast(tf.reshape(sum_rows(dy), tf.shape(v)), v.dtype), None

    return tf.broadcast_to(v, shape), grad


def normalize(x, epsilon: float, dtype) -> tf.Tensor:
    """x [..., C] -> (x - mean) / sqrt(variance + epsilon) over the last axis, in `dtype`
    (statistics in float32).

    The gradient is written out, dx = rstd (dy - mean(dy) - xhat mean(dy xhat)), recomputing
    xhat from x and the saved per-row mean and rstd [..., 1]: differentiated automatically,
    XLA keeps float32 intermediates [..., C] of the forward pass for the backward and splits
    each of their reductions into a slow reduce-window (6-7% of a small prior's step).
    """

    @tf.custom_gradient
    def run(x_in):
        xf = tf.cast(x_in, tf.float32)
        mean = tf.reduce_mean(xf, axis=-1, keepdims=True)
        rstd = tf.math.rsqrt(tf.reduce_mean(tf.square(xf - mean), axis=-1, keepdims=True)
                             + epsilon)

        def grad(dy):
            dy = tf.cast(dy, tf.float32)
            xhat = (tf.cast(x_in, tf.float32) - mean) * rstd
            dx = rstd * (dy - tf.reduce_mean(dy, axis=-1, keepdims=True)
                         - xhat * tf.reduce_mean(dy * xhat, axis=-1, keepdims=True))
            return tf.cast(dx, x_in.dtype)

        return tf.cast((xf - mean) * rstd, dtype), grad

    return run(x)


@keras.saving.register_keras_serializable(PACKAGE)
class LayerNorm(keras.layers.LayerNormalization):
    """keras LayerNormalization over the last axis (same weights: gamma, beta, float32), as
    `normalize` then gamma and beta. A Linear right after it folds gamma and beta into its own
    weights instead (Linear.call(x, norm=...), `fold`)."""

    def normalize(self, x) -> tf.Tensor:
        return normalize(x, self.epsilon, self.compute_dtype)

    def fold(self, kernel, bias):
        """(kernel [C, units], bias [units] or None) of a Linear applied to this layer's output
        -> float32 (kernel', bias') with LN(x) @ kernel + bias == normalize(x) @ kernel' +
        bias': kernel' = gamma[:, None] kernel, bias' = beta @ kernel + bias. Autodiff then
        gives gamma's and beta's gradients from the [C, units] gradient of kernel', where the
        layer's own would sum [..., C] products over every row of the batch (about 9% of a
        small prior's bfloat16 step, A/B in one process)."""
        kernel = tf.cast(kernel, tf.float32)
        bias = None if bias is None else tf.cast(bias, tf.float32)
        if self.beta is not None:
            shift = tf.linalg.matvec(kernel, self.beta, transpose_a=True)
            bias = shift if bias is None else bias + shift
        if self.gamma is not None:
            kernel = self.gamma[:, None] * kernel
        return kernel, bias

    def call(self, inputs, training=None):
        y = normalize(inputs, self.epsilon, tf.float32)  # gamma and beta applied in float32
        shape = tf.shape(y)
        if self.gamma is not None:
            y *= broadcast_rows(tf.cast(self.gamma, tf.float32), shape)
        if self.beta is not None:
            y += broadcast_rows(tf.cast(self.beta, tf.float32), shape)
        return tf.cast(y, self.compute_dtype)


@keras.saving.register_keras_serializable(PACKAGE)
class Linear(keras.layers.Dense):
    """keras Dense (same weights: kernel [in, units], bias [units]) computed as one 2-D matrix
    product over all leading axes, with its bias gradient as a matrix product too
    (broadcast_rows): a batched matmul and its per-batch kernel gradients otherwise.

    call(x, norm=ln) computes self(ln(x)) for a LayerNorm `ln`, with ln's gamma and beta
    folded into the kernel and bias (LayerNorm.fold; the kernel as the policy reads it).
    """

    def call(self, inputs, norm=None, training=None):
        kernel, bias = self.kernel, self.bias
        if norm is not None:
            inputs = norm.normalize(inputs)
            kernel, bias = norm.fold(kernel, bias)
        kernel = tf.cast(kernel, self.compute_dtype)
        inputs = tf.cast(inputs, self.compute_dtype)
        shape = dims(inputs)
        y = tf.matmul(tf.reshape(inputs, [-1, shape[-1]]), kernel)
        y = tf.reshape(y, shape[:-1] + [self.units])
        if bias is not None:
            y += broadcast_rows(tf.cast(bias, self.compute_dtype), tf.shape(y))
        return self.activation(y) if self.activation is not None else y


def linear(units: int, init_scale: float = 1.0, zero_out: bool = False,
           name: str | None = None) -> keras.layers.Dense:
    """The original's Conv1D (x @ w + b): w ~ N(0, (0.02 init_scale)^2), or zeros; b zeros."""
    init = ("zeros" if zero_out
            else keras.initializers.RandomNormal(stddev=0.02 * init_scale))
    return Linear(units, kernel_initializer=init, bias_initializer="zeros", name=name)
