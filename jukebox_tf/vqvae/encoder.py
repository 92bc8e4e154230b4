"""Encoders: raw audio [B, T, channels] -> embeddings [B, T / hop, emb_width].

One `EncoderConvBlock` (layers/conv_blocks.py) per level of downsampling; the encoder of level
l stacks the blocks of levels 0..l, so each level's encoder reads the raw audio on its own (no
sharing between levels).
"""

from __future__ import annotations

import keras

from jukebox_tf.layers import PACKAGE
from jukebox_tf.layers.chain import LayerChain
from jukebox_tf.layers.conv_blocks import EncoderConvBlock


def resnet_kwargs(config, level: int) -> dict:
    """Width/depth for one level, scaled by the config's per-level multipliers."""
    m = config.multipliers[level]
    return dict(width=config.width * m, depth=config.depth * m, m_conv=config.m_conv,
                dilation_growth_rate=config.dilation_growth_rate,
                dilation_cycle=config.dilation_cycle)


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
