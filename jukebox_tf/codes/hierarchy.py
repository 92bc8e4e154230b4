"""The facts a VQ-VAE, the codes it writes and every prior over them share, with their one
check: the audio's sample rate, each level's hop length (audio samples per code), the codebook
size. The VQ-VAE's config says them; a codes manifest and a prior run's task.json repeat them.

    hierarchy = CodeHierarchy.of(vqvae.config)     # or a codes manifest / task.json "codes"
    hierarchy.hop_ratio(1)                         # codes of level 1 per code of level 2
    hierarchy.check(PriorFacts(level=1, l_bins=2048), "--upsamplers RUN")  # or raises
"""

from __future__ import annotations

import dataclasses

from jukebox_tf.errors import JukeboxError


class HierarchyError(JukeboxError, ValueError):
    """A model, codes or audio that do not fit the hierarchy (a ValueError too: the library's
    callers of the model-level checks catch that)."""


@dataclasses.dataclass(frozen=True)
class CodeHierarchy:
    """None where the caller does not know a fact (sampling one level knows its hops only)."""

    sample_rate: int | None
    hop_lengths: tuple[int, ...]
    l_bins: int | None

    def __post_init__(self):
        object.__setattr__(self, "hop_lengths", tuple(int(h) for h in self.hop_lengths))

    @classmethod
    def of(cls, source) -> "CodeHierarchy":
        """From a VQ-VAE config (attributes) or a codes manifest / task.json "codes" (keys)."""
        get = source.get if isinstance(source, dict) else lambda k: getattr(source, k)
        return cls(_int(get("sample_rate")), tuple(get("hop_lengths")), _int(get("l_bins")))

    @property
    def levels(self) -> int:
        return len(self.hop_lengths)

    @property
    def top_level(self) -> int:
        return self.levels - 1

    def hop_ratio(self, level: int) -> int:
        """Codes of `level` per code of the level above."""
        return hop_ratio(self.hop_lengths, level)

    def hop_ratios(self) -> list[int]:
        """hop_ratio of each level below the top."""
        return [self.hop_ratio(level) for level in range(self.top_level)]

    def check(self, facts: "PriorFacts", where: str,
              subject: str = "the prior was trained on") -> None:
        """Raises HierarchyError, prefixed by `where`, at the first fact of a prior (or of
        codes) that disagrees with this VQ-VAE's; facts None on either side are not known."""
        subject += " codes of"
        if facts.levels is not None and facts.levels != self.levels:
            raise HierarchyError(f"{where}: {subject} a {facts.levels}-level VQ-VAE, the VQ-VAE "
                                 f"has {self.levels} levels")
        if facts.level is not None and not 0 <= facts.level <= self.top_level:
            raise HierarchyError(f"{where}: the prior models level {facts.level}, the VQ-VAE "
                                 f"has levels 0..{self.top_level}")
        if None not in (facts.l_bins, self.l_bins) and facts.l_bins != self.l_bins:
            raise HierarchyError(f"{where}: the prior has a codebook size of {facts.l_bins} "
                                 f"codes, the VQ-VAE's codebook has {self.l_bins} (l_bins)")
        if facts.hop_lengths is not None and facts.hop_lengths != self.hop_lengths:
            raise HierarchyError(f"{where}: the prior's codes have hop lengths "
                                 f"{facts.hop_lengths}, the VQ-VAE's {self.hop_lengths}")
        if None not in (facts.sample_rate, self.sample_rate) and \
                facts.sample_rate != self.sample_rate:
            raise HierarchyError(f"{where}: {subject} {facts.sample_rate} Hz audio, the VQ-VAE "
                                 f"works at a sample rate of {self.sample_rate} Hz")
        if (facts.hop_ratio is not None and facts.level is not None
                and facts.level < self.top_level
                and facts.hop_ratio != self.hop_ratio(facts.level)):
            raise HierarchyError(f"{where}: the level-{facts.level} prior upsamples the level "
                                 f"above by {facts.hop_ratio}, the VQ-VAE's hop lengths "
                                 f"{self.hop_lengths} by {self.hop_ratio(facts.level)}")

    def check_audio_rate(self, sample_rate: int, where: str) -> None:
        """Audio (a dataset, a prompt) must be at the VQ-VAE's rate."""
        if int(sample_rate) != self.sample_rate:
            raise HierarchyError(f"{where}: audio at {sample_rate} Hz, the VQ-VAE works at "
                                 f"{self.sample_rate} Hz; re-ingest with --sample-rate "
                                 f"{self.sample_rate}")


def hop_ratio(hop_lengths, level: int) -> int:
    """Codes of `level` per code of the level above, for hop lengths by level."""
    top = len(hop_lengths) - 1
    if not 0 <= level < top:
        raise HierarchyError(f"level {level} has no level above (levels 0..{top})")
    ratio, rest = divmod(int(hop_lengths[level + 1]), int(hop_lengths[level]))
    if rest:
        raise HierarchyError(f"hop lengths {list(hop_lengths)}: level {level + 1} is not a "
                             f"whole number of level-{level} tokens")
    return ratio


@dataclasses.dataclass(frozen=True)
class PriorFacts:
    """What a prior (or a codes dataset) says of the hierarchy it belongs to; None: unknown."""

    level: int | None = None
    levels: int | None = None
    l_bins: int | None = None
    sample_rate: int | None = None  # only where the prior counts audio samples (timing)
    hop_lengths: tuple[int, ...] | None = None
    hop_ratio: int | None = None  # an upsampler's tokens per token of the level above

    def __post_init__(self):
        # JSON and npz metadata give numbers of other types (floats, numpy ints, lists).
        for field in ("level", "levels", "l_bins", "sample_rate", "hop_ratio"):
            object.__setattr__(self, field, _int(getattr(self, field)))
        if self.hop_lengths is not None:
            object.__setattr__(self, "hop_lengths", tuple(int(h) for h in self.hop_lengths))


def _int(value):
    return None if value is None else int(value)
