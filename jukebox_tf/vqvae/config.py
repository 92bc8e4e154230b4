"""VQ-VAE hyperparameters as frozen dataclasses, with named presets.

Field names follow the original's hparams (downs_t, strides_t, l_bins, l_mu, m_conv, ...), so
its configurations can be read across directly.
"""

from __future__ import annotations

import dataclasses
import math


@dataclasses.dataclass(frozen=True)
class VQVAEConfig:
    sample_rate: int = 22050
    channels: int = 1
    levels: int = 3
    downs_t: tuple[int, ...] = (3, 2, 2)  # stride-2 downsamplings per level: hops 8, 32, 128
    strides_t: tuple[int, ...] = (2, 2, 2)
    emb_width: int = 64
    l_bins: int = 512
    l_mu: float = 0.99  # EMA decay of the codebook statistics
    restart_threshold: float = 1.0  # codes with an EMA count below this are restarted
    commit: float = 0.02
    width: int = 32
    depth: int = 4
    m_conv: float = 1.0
    dilation_growth_rate: int = 3
    dilation_cycle: int | None = None
    multipliers: tuple[int, ...] = (1, 1, 1)  # per level, scales width and depth
    lmix_l2: float = 1.0
    lmix_linf: float = 0.02
    linf_k: int = 2048
    multispectral: float = 1.0
    multispec_n_fft: tuple[int, ...] = (2048, 1024, 512)
    multispec_hop: tuple[int, ...] = (240, 120, 50)
    multispec_window: tuple[int, ...] = (1200, 600, 240)
    sample_length: int = 32768  # training window, in samples

    def __post_init__(self):
        for name in ("downs_t", "strides_t", "multipliers"):
            if len(getattr(self, name)) != self.levels:
                raise ValueError(f"{name} has {len(getattr(self, name))} entries for "
                                 f"{self.levels} levels")
        if self.sample_length % self.hop_lengths[-1]:
            raise ValueError(f"sample_length {self.sample_length} is not a multiple of the top "
                             f"hop length {self.hop_lengths[-1]}")

    @property
    def hop_lengths(self) -> tuple[int, ...]:
        """Samples per code at each level: (8, 32, 128) for the default downsampling."""
        return tuple(math.prod(s ** d for s, d in zip(self.strides_t[:level + 1],
                                                       self.downs_t[:level + 1]))
                     for level in range(self.levels))

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> "VQVAEConfig":
        fields = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - fields)
        if unknown:
            raise ValueError(f"unknown VQ-VAE config field(s): {', '.join(unknown)}")
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in values.items()})


PRESETS = {
    # Seconds per step on a CPU: for tests and the demo.
    "tiny": VQVAEConfig(emb_width=16, l_bins=64, width=16, depth=2, linf_k=256,
                        sample_length=8192),
    # Real CPU training at 22050 Hz (the REFERENCE's `small` benchmark configuration).
    "small": VQVAEConfig(),
    # The released Jukebox VQ-VAE.
    "paper": VQVAEConfig(sample_rate=44100, l_bins=2048, multipliers=(2, 1, 1),
                         sample_length=393216),
}


def get_preset(name: str, **overrides) -> VQVAEConfig:
    if name not in PRESETS:
        raise ValueError(f"unknown VQ-VAE preset {name!r} (choose from {', '.join(PRESETS)})")
    return dataclasses.replace(PRESETS[name], **overrides)
