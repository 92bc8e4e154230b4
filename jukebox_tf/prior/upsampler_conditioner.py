"""The upsamplers' conditioning on the level above, as the original's `Conditioner`.

Codes of the level above are embedded, upsampled in time by the hop ratio between the levels
with the VQ-VAE decoder's conv block (dilated residual stacks + transposed convs), and layer-normed;
the result is added at every position of the upsampler prior.
"""

from __future__ import annotations

import keras
import tensorflow as tf

from jukebox_tf.layers import PACKAGE
from jukebox_tf.layers.conv_blocks import DecoderConvBlock



@keras.saving.register_keras_serializable(PACKAGE)
class UpsamplerConditioner(keras.layers.Layer):
    """codes int [B, T] (level above) -> [B, T * stride_t**down_t, out_width].

    call(codes, x_cond=None): x_cond [B, T, out_width], the conditioning of the level above
    that level when stacking conditioners, is added to the embedding. Defaults are the paper's
    (cond_width 1024, cond_depth 16, dilations 3**(i % 8), in the original's non-reversed order);
    level 1's upsampler uses res_scale=True, level 0's False.
    """

    def __init__(self, bins: int, out_width: int, down_t: int = 2, stride_t: int = 2,
                 width: int = 1024, depth: int = 16, m_conv: float = 1.0,
                 dilation_growth_rate: int = 3, dilation_cycle: int | None = 8,
                 res_scale: bool = False, reverse_dilation: bool = False,
                 init_scale: float = 1.0, **kwargs):
        super().__init__(**kwargs)
        if down_t < 1:
            raise ValueError(f"down_t must be >= 1, got {down_t}")
        self.bins, self.out_width, self.init_scale = bins, out_width, init_scale
        self.down_t, self.stride_t = down_t, stride_t
        self.block_args = dict(down_t=down_t, stride_t=stride_t, width=width, depth=depth,
                               m_conv=m_conv, dilation_growth_rate=dilation_growth_rate,
                               dilation_cycle=dilation_cycle, res_scale=res_scale,
                               reverse_dilation=reverse_dilation)
        self.block = DecoderConvBlock(out_width, name="block", **self.block_args)
        # torch's LayerNorm epsilon, not Keras' 1e-3.
        self.ln = keras.layers.LayerNormalization(epsilon=1e-5, name="ln")

    @property
    def upsampling(self) -> int:
        return self.stride_t ** self.down_t

    def build(self, input_shape):
        self.x_emb = self.add_weight(
            name="x_emb", shape=(self.bins, self.out_width),
            initializer=keras.initializers.RandomNormal(stddev=0.02 * self.init_scale))
        emb_shape = (input_shape[0], input_shape[1], self.out_width)
        self.block.build(emb_shape)
        self.ln.build(self.block.compute_output_shape(emb_shape))
        super().build(input_shape)

    def call(self, codes, x_cond=None):
        x = tf.cast(tf.gather(self.x_emb, tf.cast(codes, tf.int32)), self.compute_dtype)
        if x_cond is not None:
            x = x + tf.cast(x_cond, x.dtype)
        return self.ln(self.block(x))

    def compute_output_shape(self, input_shape, x_cond_shape=None):
        steps = input_shape[1]
        return (input_shape[0], None if steps is None else steps * self.upsampling,
                self.out_width)

    def get_config(self):
        return super().get_config() | {"bins": self.bins, "out_width": self.out_width,
                                       "init_scale": self.init_scale} | self.block_args


def count_upsampler_conditioner_params(bins: int, out_width: int, down_t: int = 2,
                                       stride_t: int = 2, width: int = 1024, depth: int = 16,
                                       m_conv: float = 1.0) -> int:
    """Parameters of an UpsamplerConditioner (dilations and res_scale do not change them)."""
    def conv(k, n_in, n_out):
        return k * n_in * n_out + n_out

    state = int(m_conv * width)
    resnet = depth * (conv(3, width, state) + conv(1, state, width))
    ups = (down_t - 1) * conv(2 * stride_t, width, width) + conv(2 * stride_t, width, out_width)
    return (bins * out_width + conv(3, out_width, width) + down_t * resnet + ups
            + 2 * out_width)
