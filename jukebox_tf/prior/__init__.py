"""The priors: factorized-attention transformers over VQ-VAE codes."""

from jukebox_tf.prior.config import (PRESETS, PriorConfig, count_prior_params,  # noqa: F401
                                     count_transformer_params, get_preset, with_lyric_prefix,
                                     with_lyrics)
