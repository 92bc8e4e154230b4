"""Encoders: raw audio [B, T, channels] -> embeddings [B, T / hop, emb_width].

One `EncoderConvBlock` per level of downsampling; the encoder of level l stacks the blocks of
levels 0..l, so each level's encoder reads the raw audio on its own (no sharing between levels).
"""

from __future__ import annotations

import keras

from jukebox_tf.vqvae.chain import LayerChain
from jukebox_tf.vqvae.conv import Conv1D
from jukebox_tf.vqvae.resnet import PACKAGE, Resnet1D


def resnet_kwargs(config, level: int) -> dict:
    """Width/depth for one level, scaled by the config's per-level multipliers."""
    m = config.multipliers[level]
    return dict(width=config.width * m, depth=config.depth * m, m_conv=config.m_conv,
                dilation_growth_rate=config.dilation_growth_rate,
                dilation_cycle=config.dilation_cycle)


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
class Encoder(LayerChain):
    """The encoder of one VQ-VAE level: the conv blocks of levels 0..level in sequence."""

    time_as_width = True

    def __init__(self, emb_width: int, downs_t, strides_t, width: int = 32, depth: int = 4,
                 m_conv: float = 1.0, dilation_growth_rate: int = 3,
                 dilation_cycle: int | None = None, **kwargs):
        super().__init__(**kwargs)
        self.config_args = dict(emb_width=emb_width, downs_t=tuple(downs_t),
                                strides_t=tuple(strides_t), width=width, depth=depth,
                                m_conv=m_conv, dilation_growth_rate=dilation_growth_rate,
                                dilation_cycle=dilation_cycle)
        self.level_blocks = [
            EncoderConvBlock(emb_width, down_t, stride_t, width, depth, m_conv,
                             dilation_growth_rate, dilation_cycle, name=f"level_{i}")
            for i, (down_t, stride_t) in enumerate(zip(downs_t, strides_t))]

    def chain(self):
        return self.level_blocks
