"""The down- and upsampling conv blocks: strided convs between dilated residual stacks.

The VQ-VAE's encoder and decoder of each level chain them (vqvae/encoder.py, decoder.py); the
upsamplers' conditioner upsamples the level above's codes with a `DecoderConvBlock`.
"""

from __future__ import annotations

import keras

from jukebox_tf.layers import PACKAGE
from jukebox_tf.layers.chain import LayerChain
from jukebox_tf.layers.conv import Conv1D, Conv1DTranspose
from jukebox_tf.layers.resnet import Resnet1D


@keras.saving.register_keras_serializable(PACKAGE)
class EncoderConvBlock(LayerChain):
    """down_t x [Conv1D(k=4, s=2) + Resnet1D], then Conv1D(k=3) to the embedding width.

    [B, T, C] -> [B, T / stride_t**down_t, out_width].
    """

    def __init__(self, out_width: int, down_t: int, stride_t: int = 2, width: int = 32,
                 depth: int = 4, m_conv: float = 1.0, dilation_growth_rate: int = 3,
                 dilation_cycle: int | None = None, **kwargs):
        super().__init__(**kwargs)
        self.config_args = dict(out_width=out_width, down_t=down_t, stride_t=stride_t,
                                width=width, depth=depth, m_conv=m_conv,
                                dilation_growth_rate=dilation_growth_rate,
                                dilation_cycle=dilation_cycle)
        self.stages = []
        for i in range(down_t):
            self.stages.append(Conv1D(width, stride_t * 2, strides=stride_t, name=f"down_{i}"))
            self.stages.append(Resnet1D(width, depth, m_conv, dilation_growth_rate,
                                        dilation_cycle, name=f"resnet_{i}"))
        self.stages.append(Conv1D(out_width, 3, name="out"))

    def chain(self):
        return self.stages


@keras.saving.register_keras_serializable(PACKAGE)
class DecoderConvBlock(LayerChain):
    """Conv1D(k=3) to width, then down_t x [Resnet1D + Conv1DTranspose(k=2s, s)]; the residual
    stacks run their dilations reversed unless `reverse_dilation=False`.

    [B, T, emb] -> [B, T * stride_t**down_t, out_width].
    """

    def __init__(self, out_width: int, down_t: int, stride_t: int = 2, width: int = 32,
                 depth: int = 4, m_conv: float = 1.0, dilation_growth_rate: int = 3,
                 dilation_cycle: int | None = None, res_scale: bool = False,
                 reverse_dilation: bool = True, **kwargs):
        super().__init__(**kwargs)
        # res_scale / reverse_dilation=False: the prior's upsampling conditioner reuses this
        # block with the original's settings for it (VQ-VAE decoders keep the defaults).
        self.config_args = dict(out_width=out_width, down_t=down_t, stride_t=stride_t,
                                width=width, depth=depth, m_conv=m_conv,
                                dilation_growth_rate=dilation_growth_rate,
                                dilation_cycle=dilation_cycle, res_scale=res_scale,
                                reverse_dilation=reverse_dilation)
        self.stages = [Conv1D(width, 3, name="in")]
        for i in range(down_t):
            self.stages.append(Resnet1D(width, depth, m_conv, dilation_growth_rate,
                                        dilation_cycle, res_scale=res_scale,
                                        reverse_dilation=reverse_dilation,
                                        name=f"resnet_{i}"))
            self.stages.append(Conv1DTranspose(out_width if i == down_t - 1 else width,
                                               stride_t * 2, strides=stride_t, name=f"up_{i}"))

    def chain(self):
        return self.stages
