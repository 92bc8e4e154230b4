"""The priors: factorized-attention transformers over VQ-VAE codes."""

from jukebox_tf.prior.config import (PRESETS, SIZES, PriorConfig,  # noqa: F401
                                     count_prior_params, count_transformer_params, get_preset,
                                     preset_for_level, with_lyric_prefix, with_lyrics)
