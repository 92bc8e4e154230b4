"""What to sample and how, for every level of the hierarchy: the settings of
modes.sample_codes, apart from its inputs (a prompt, saved codes) and its progress hooks.

    settings = SamplingSettings(seconds=10, n_samples=2, artist_id=3, genre_ids=[7],
                                lyrics="...", temperatures=0.98)
    codes = sample_codes("ancestral", vqvae, priors, settings)

(sampler.SamplerSettings is one window's share of them.)
"""

from __future__ import annotations

import dataclasses
from typing import Mapping, Sequence

import numpy as np

from jukebox_tf.errors import JukeboxError
from jukebox_tf.sampling.windowed import HOP_FRACTIONS

DEFAULT_TEMPERATURES = (0.99, 0.99, 0.99)  # the original sample.py's, per level


@dataclasses.dataclass(frozen=True)
class SamplingSettings:
    """seconds: the length to reach (not for upsample, whose length is the saved top level's).
    total_seconds: the track length the timing conditioning sees (default: seconds).
    n_samples: default one per prompt or saved code set, else 1. artist_id and genre_ids: the
    same ids at every level, or {level: ids} where the levels' priors name their labels
    differently (runs.Hierarchy.level_label_ids). temperatures and hop_fractions: one value,
    or one per level (index = level). seed: sample i gets seed + i. jit_compile: True, False
    or "auto" (modes.use_xla, per level)."""

    seconds: float | None = None
    total_seconds: float | None = None
    n_samples: int | None = None
    artist_id: int | Mapping[int, int] = 0
    genre_ids: Sequence[int] | Mapping[int, Sequence[int]] = ()
    lyrics: str | None = None
    temperatures: float | Sequence[float] = DEFAULT_TEMPERATURES
    top_k: int = 0
    top_p: float = 0.0
    hop_fractions: float | Sequence[float] = HOP_FRACTIONS
    chunk_size: int = 32
    seed: int = 0
    jit_compile: bool | str = False

    def per_level(self, name: str, levels: int) -> tuple:
        """The setting `name` (temperatures or hop_fractions) as one value per level."""
        value = getattr(self, name)
        if np.ndim(value) == 0:
            return (value,) * levels
        if len(value) != levels:
            raise JukeboxError(f"{name}: {len(value)} values for {levels} levels")
        return tuple(value)

    def labels_of(self, level: int) -> tuple:
        """(artist id, genre ids) at `level`."""
        return tuple(value[level] if isinstance(value, Mapping) else value
                     for value in (self.artist_id, self.genre_ids))
