"""The hierarchical VQ-VAE: raw audio to three levels of discrete codes and back."""

from jukebox_tf.vqvae.config import PRESETS, VQVAEConfig, get_preset  # noqa: F401
