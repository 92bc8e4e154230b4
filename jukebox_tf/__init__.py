"""jukebox-tf: OpenAI's Jukebox rebuilt on the TensorFlow stack."""

__version__ = "0.1.0"
