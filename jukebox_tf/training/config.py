"""Hyperparameters of the training loop (the task owns the model and data ones)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from jukebox_tf.errors import JukeboxError

DECAYS = ("linear", "cosine", "constant")
# Compute precisions a restored model can run inference in (restore_for_eval's `precision`).
INFERENCE_PRECISIONS = ("float32", "bfloat16")


def precision_policy(precision: str) -> str:
    """The Keras dtype policy computing in `precision` with float32 weights."""
    if precision not in INFERENCE_PRECISIONS:
        raise JukeboxError(f"precision: {precision!r} is not one of {INFERENCE_PRECISIONS}")
    return "float32" if precision == "float32" else f"mixed_{precision}"


@dataclass(frozen=True)
class TrainConfig:
    """One training run. Steps count optimizer steps of `global_batch_size` examples.

    The learning rate warms up linearly from 0 over `warmup_steps`, then follows `decay`:
    "linear" reaches 0 at `steps`, "cosine" follows half a cosine to 0 at `steps`.
    `weight_decay` > 0 switches Adam to AdamW (decoupled decay, scaled by the learning rate).
    """

    steps: int
    global_batch_size: int
    learning_rate: float = 3e-4
    warmup_steps: int = 100
    decay: str = "linear"
    clip_norm: float | None = 1.0
    adam_beta_1: float = 0.9
    adam_beta_2: float = 0.999
    weight_decay: float = 0.0
    ema_decay: float | None = 0.999
    mixed_precision: str | bool | None = None  # None, "float16" (loss-scaled) or "bfloat16"
    checkpoint_every: int = 500
    keep_checkpoints: int = 3
    log_every: int = 10
    media_every: int = 200
    seed: int = 0

    def __post_init__(self):
        at_least_one = ("global_batch_size", "checkpoint_every", "keep_checkpoints",
                        "log_every", "media_every")
        for name in at_least_one:
            _require(self, name, _is_int(getattr(self, name)) and getattr(self, name) >= 1,
                     "must be an integer >= 1")
        # steps 0 saves the initial weights: an untrained run (a baseline, a pipeline check).
        _require(self, "steps", _is_int(self.steps) and self.steps >= 0, "must be an integer >= 0")
        _require(self, "warmup_steps", _is_int(self.warmup_steps) and self.warmup_steps >= 0,
                 "must be an integer >= 0")
        _require(self, "seed", _is_int(self.seed) and self.seed >= 0, "must be an integer >= 0")
        _require(self, "learning_rate", _is_real(self.learning_rate) and self.learning_rate > 0,
                 "must be a number > 0")
        _require(self, "decay", self.decay in DECAYS, f"must be one of {', '.join(DECAYS)}")
        _require(self, "clip_norm", self.clip_norm is None
                 or (_is_real(self.clip_norm) and self.clip_norm > 0), "must be None or > 0")
        for name in ("adam_beta_1", "adam_beta_2"):
            _require(self, name, _is_real(getattr(self, name)) and 0 <= getattr(self, name) < 1,
                     "must be in [0, 1)")
        _require(self, "weight_decay", _is_real(self.weight_decay) and self.weight_decay >= 0,
                 "must be a number >= 0")
        _require(self, "ema_decay", self.ema_decay is None
                 or (_is_real(self.ema_decay) and 0 <= self.ema_decay < 1),
                 "must be None (off) or in [0, 1)")
        _require(self, "mixed_precision", self.mixed_precision in _PRECISIONS,
                 "must be None, 'float16' or 'bfloat16'")
        # Canonical spelling, so task.json and resume checks compare like with like.
        object.__setattr__(self, "mixed_precision", _PRECISIONS[self.mixed_precision])

    @property
    def dtype_policy(self) -> str | None:
        """The Keras global dtype policy the loop sets while building the model."""
        return f"mixed_{self.mixed_precision}" if self.mixed_precision else None

    @property
    def loss_scaling(self) -> bool:
        """float16 needs dynamic loss scaling; bfloat16 has float32's exponent range."""
        return self.mixed_precision == "float16"

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


_PRECISIONS = {None: None, False: None, True: "float16", "float16": "float16",
               "mixed_float16": "float16", "bfloat16": "bfloat16", "mixed_bfloat16": "bfloat16"}


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_real(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and value == value


def _require(config: TrainConfig, field: str, ok: bool, what: str):
    if not ok:
        raise JukeboxError(f"TrainConfig.{field}={getattr(config, field)!r}: {what}")
