"""Decoders: embeddings [B, T / hop, emb_width] -> audio [B, T, channels].

The mirror of the encoder: each `DecoderConvBlock` (layers/conv_blocks.py) runs its residual
stacks with the dilations reversed and upsamples with Conv1DTranspose(k=4, s=2); the decoder of
level l applies the blocks of levels l..0, then a final Conv1D(k=3) to the audio channels.
"""

from __future__ import annotations

import keras

from jukebox_tf.layers import PACKAGE
from jukebox_tf.layers.chain import LayerChain
from jukebox_tf.layers.conv import Conv1D
from jukebox_tf.layers.conv_blocks import DecoderConvBlock


@keras.saving.register_keras_serializable(PACKAGE)
class Decoder(LayerChain):
    """The decoder of one VQ-VAE level: blocks of levels `level`..0, then Conv1D to audio."""

    time_as_width = True

    def __init__(self, channels: int, emb_width: int, downs_t, strides_t, width: int = 32,
                 depth: int = 4, m_conv: float = 1.0, dilation_growth_rate: int = 3,
                 dilation_cycle: int | None = None, **kwargs):
        super().__init__(**kwargs)
        self.config_args = dict(channels=channels, emb_width=emb_width, downs_t=tuple(downs_t),
                                strides_t=tuple(strides_t), width=width, depth=depth,
                                m_conv=m_conv, dilation_growth_rate=dilation_growth_rate,
                                dilation_cycle=dilation_cycle)
        self.level_blocks = [
            DecoderConvBlock(emb_width, down_t, stride_t, width, depth, m_conv,
                             dilation_growth_rate, dilation_cycle, name=f"level_{i}")
            for i, (down_t, stride_t) in enumerate(zip(downs_t, strides_t))]
        self.out = Conv1D(channels, 3, name="out")

    def chain(self):
        return list(reversed(self.level_blocks)) + [self.out]
