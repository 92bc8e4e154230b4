"""Settings of the Jukebox TFX pipeline, as frozen dataclasses with named presets.

    config = get_config("tiny", vqvae_steps=50)
    create_pipeline(..., config=config)

`tiny` is the demo and CI size (minutes on 2 CPU cores); `small` trains the CPU-sized models
of the library's `small` presets on real music. Every field ends up in a component's
execution properties, so changing one re-runs that component and everything after it, and
leaving them alone lets a second run reuse the cached outputs.
"""

from __future__ import annotations

import dataclasses

from jukebox_tf.prior.config import SIZES, preset_for_level
from jukebox_tf.vqvae.config import PRESETS as VQVAE_PRESETS

PIPELINE_NAME = "jukebox-tf"
MODEL_NAME = "jukebox"


@dataclasses.dataclass(frozen=True)
class PipelineConfig:
    preset: str = "tiny"  # the library presets: VQ-VAE `preset`, priors `preset`/`preset_upsampler`
    sample_rate: int = 22050
    chunk_seconds: float = 10.0
    eval_ratio: float = 0.3  # share of the tracks in the eval split (whole tracks, by hash)
    vqvae_steps: int = 400
    vqvae_batch_size: int = 4
    vqvae_learning_rate: float = 1e-3
    prior_steps: int = 600  # top-level prior
    upsampler_steps: int = 400  # each upsampler
    prior_batch_size: int = 8
    prior_learning_rate: float = 2e-3
    code_batch_size: int = 8  # chunks per CodeGen encode call
    max_eval_chunks: int = 64
    model_name: str = MODEL_NAME
    strict_ingest: bool = False  # reject truncated files instead of keeping what decodes
    # Runs brought in through Importer nodes instead of training (imported_runs.py): the
    # VQ-VAE and the upsamplers are used as they are, the top prior is fine-tuned.
    vqvae_from: str | None = None
    upsamplers_from: tuple[str, ...] = ()
    top_prior_from: str | None = None
    top_prior_labels: str = "map"  # fine-tuning: map the data's names onto the run's, or replace

    def __post_init__(self):
        if self.preset not in SIZES or self.preset not in VQVAE_PRESETS:
            raise ValueError(f"preset {self.preset!r}: not a size of both the VQ-VAE and the "
                             f"prior presets ({', '.join(s for s in SIZES if s in VQVAE_PRESETS)})")
        for field in ("vqvae_steps", "prior_steps", "upsampler_steps"):
            if getattr(self, field) < 0:
                raise ValueError(f"{field} must be >= 0, got {getattr(self, field)}")
        if self.top_prior_labels not in ("map", "replace"):
            raise ValueError(f"top_prior_labels must be 'map' or 'replace', got "
                             f"{self.top_prior_labels!r}")
        object.__setattr__(self, "upsamplers_from", tuple(self.upsamplers_from))
        if not 0 < self.eval_ratio < 1:
            raise ValueError(f"eval_ratio must be in (0, 1), got {self.eval_ratio}")
        for field in ("sample_rate", "vqvae_batch_size", "prior_batch_size", "code_batch_size",
                      "max_eval_chunks"):
            if getattr(self, field) < 1:
                raise ValueError(f"{field} must be >= 1, got {getattr(self, field)}")

    def vqvae_custom_config(self) -> dict:
        return {"preset": self.preset, "sample_rate": self.sample_rate,
                "train": self._train(self.vqvae_batch_size, self.vqvae_learning_rate,
                                     self.vqvae_steps)}

    @property
    def top_level(self) -> int:
        """The top prior's level: the VQ-VAE preset's top."""
        return VQVAE_PRESETS[self.preset].levels - 1

    def prior_custom_config(self, level: int) -> dict:
        custom = {"preset": preset_for_level(self.preset, level, self.top_level), "level": level,
                  "batch_size": self.prior_batch_size,
                  "train": self._train(self.prior_batch_size, self.prior_learning_rate,
                                       self.prior_steps_of(level))}
        if level == self.top_level and self.top_prior_from:
            custom["labels"] = self.top_prior_labels
        return custom

    def prior_steps_of(self, level: int) -> int:
        return self.prior_steps if level == self.top_level else self.upsampler_steps

    @staticmethod
    def _train(batch_size: int, learning_rate: float, steps: int) -> dict:
        """TrainConfig fields (steps come from the Trainer's train_args)."""
        return {"global_batch_size": batch_size, "learning_rate": learning_rate,
                "warmup_steps": min(20, steps // 10), "checkpoint_every": max(steps, 1),
                "media_every": max(steps // 2, 1)}


PRESETS = {
    "tiny": PipelineConfig(),
    "small": PipelineConfig(preset="small", chunk_seconds=24.0, vqvae_steps=20000,
                            vqvae_learning_rate=3e-4, prior_steps=20000, upsampler_steps=20000,
                            prior_batch_size=4, prior_learning_rate=3e-4, max_eval_chunks=256),
}


def get_config(preset: str = "tiny", **overrides) -> PipelineConfig:
    if preset not in PRESETS:
        raise ValueError(f"unknown pipeline preset {preset!r} (choose from {', '.join(PRESETS)})")
    return dataclasses.replace(PRESETS[preset], **overrides)
