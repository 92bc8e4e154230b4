"""The dilated residual 1-D stack of the conv blocks (conv_blocks.py).

Shapes are channels-last throughout: [batch, time, channels].
"""

from __future__ import annotations

import keras
import tensorflow as tf

from jukebox_tf.layers import PACKAGE
from jukebox_tf.layers.chain import LayerChain
from jukebox_tf.layers.conv import Conv1D


@tf.custom_gradient
def residual_relu(x):
    """ReLU as max(x, 0), with ReLU's one-pass gradient. A Relu op reading a residual sum gets
    fused by grappler's remapper with the conv, bias and add before it, although the next
    residual add reads that sum too; the remapper then fails ("fanout ... exist for missing
    node") and fuses nothing in the whole graph."""
    y = tf.maximum(x, tf.zeros([], x.dtype))
    return y, lambda grad: tf.raw_ops.ReluGrad(gradients=grad, features=y)


@keras.saving.register_keras_serializable(PACKAGE)
class ResConv1DBlock(keras.layers.Layer):
    """x + res_scale * conv1x1(relu(conv3_dilated(relu(x)))); [B, T, n_in] -> [B, T, n_in]."""

    def __init__(self, n_in: int, n_state: int, dilation: int = 1, res_scale: float = 1.0,
                 **kwargs):
        super().__init__(**kwargs)
        self.n_in, self.n_state, self.dilation, self.res_scale = n_in, n_state, dilation, res_scale
        self.conv3 = Conv1D(n_state, 3, dilation_rate=dilation,
                                         name="conv3")
        self.conv1 = Conv1D(n_in, 1, name="conv1")

    def build(self, input_shape):
        self.conv3.build(input_shape)
        self.conv1.build(tuple(input_shape[:-1]) + (self.n_state,))
        super().build(input_shape)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def call(self, x):
        h = self.conv1(keras.ops.relu(self.conv3(residual_relu(x))))
        return x + self.res_scale * h if self.res_scale != 1.0 else x + h

    def get_config(self):
        return super().get_config() | {"n_in": self.n_in, "n_state": self.n_state,
                                       "dilation": self.dilation, "res_scale": self.res_scale}


@keras.saving.register_keras_serializable(PACKAGE)
class Resnet1D(LayerChain):
    """`depth` residual blocks with dilations growth**i (1, 3, 9, 27, ...), optionally cycling
    every `dilation_cycle` blocks; decoders use them in reverse order."""

    def __init__(self, n_in: int, depth: int, m_conv: float = 1.0, dilation_growth_rate: int = 3,
                 dilation_cycle: int | None = None, res_scale: bool = False,
                 reverse_dilation: bool = False, **kwargs):
        super().__init__(**kwargs)
        blocks = [ResConv1DBlock(n_in, int(m_conv * n_in),
                                 dilation=dilation_growth_rate ** (
                                     i if dilation_cycle is None else i % dilation_cycle),
                                 res_scale=1.0 / depth ** 0.5 if res_scale else 1.0,
                                 name=f"block_{i}")
                  for i in range(depth)]
        self.blocks = blocks[::-1] if reverse_dilation else blocks
        self.config_args = {
            "n_in": n_in, "depth": depth, "m_conv": m_conv,
            "dilation_growth_rate": dilation_growth_rate, "dilation_cycle": dilation_cycle,
            "res_scale": res_scale, "reverse_dilation": reverse_dilation}

    def chain(self):
        return self.blocks

    @property
    def dilations(self) -> list[int]:
        return [b.dilation for b in self.blocks]
