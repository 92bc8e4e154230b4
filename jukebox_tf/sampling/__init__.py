"""Sampling the priors: logit filters, the compiled per-window loop, windowed long-form
sampling, the four hierarchy modes and their settings, and the files a run writes."""

from jukebox_tf.sampling.filters import filter_logits, pick  # noqa: F401
from jukebox_tf.sampling.modes import MODES, decode_codes, sample_codes  # noqa: F401
from jukebox_tf.sampling.outputs import load_codes_npz, save_codes_npz, write_outputs  # noqa
from jukebox_tf.sampling.sampler import SamplerSettings, WindowSampler, sample_window  # noqa
from jukebox_tf.sampling.settings import SamplingSettings  # noqa: F401
from jukebox_tf.sampling.windowed import get_starts, sample_level, upsample  # noqa: F401
