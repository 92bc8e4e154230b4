"""The priors: factorized-attention transformers over VQ-VAE codes."""

from jukebox_tf.prior.config import (PRESETS, PriorConfig, count_transformer_params,  # noqa: F401
                                     get_preset)
