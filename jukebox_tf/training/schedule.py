"""Learning-rate schedule: linear warmup from 0, then linear, cosine or no decay."""

from __future__ import annotations

import math

import keras
import tensorflow as tf

from jukebox_tf.layers import PACKAGE


@keras.saving.register_keras_serializable(PACKAGE)
class WarmupDecay(keras.optimizers.schedules.LearningRateSchedule):
    """lr(t) = peak * t / warmup for t < warmup, then decays from peak to 0 at `total_steps`.

    `t` is the optimizer's iteration count (updates applied so far), so the first update uses
    lr(0), which is 0 when there is a warmup.
    """

    def __init__(self, peak: float, warmup_steps: int, total_steps: int, decay: str = "linear"):
        super().__init__()
        self.peak = float(peak)
        self.warmup_steps = int(warmup_steps)
        self.total_steps = int(total_steps)
        self.decay = decay

    def __call__(self, step):
        t = tf.cast(step, tf.float32)
        warmup = float(self.warmup_steps)
        warm = self.peak * t / max(warmup, 1.0)
        # Fraction of the decay phase done, clipped so that lr stays 0 past `total_steps`.
        progress = tf.clip_by_value((t - warmup) / max(self.total_steps - warmup, 1.0), 0.0, 1.0)
        if self.decay == "linear":
            decayed = self.peak * (1.0 - progress)
        elif self.decay == "cosine":
            decayed = self.peak * 0.5 * (1.0 + tf.cos(math.pi * progress))
        elif self.decay == "constant":
            decayed = tf.fill(tf.shape(t), self.peak)
        else:
            raise ValueError(f"unknown decay {self.decay!r}")
        return tf.where(t < warmup, warm, decayed)

    def get_config(self) -> dict:
        return {"peak": self.peak, "warmup_steps": self.warmup_steps,
                "total_steps": self.total_steps, "decay": self.decay}
