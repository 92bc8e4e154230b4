"""jukebox-tf: OpenAI's Jukebox rebuilt on the TensorFlow stack."""

import warnings

__version__ = "0.1.0"

# Python 3.10 is pinned on purpose (TFX 1.16 has no newer build); google-api-core, pulled in
# by TFX, warns about it on every import, which only hides the warnings that matter.
warnings.filterwarnings("ignore", message="You are using a non-supported Python version",
                        category=FutureWarning)
