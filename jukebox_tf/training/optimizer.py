"""Keras 3 Adam/AdamW for a loop that all-reduces gradients itself.

Keras 3's TF optimizer sums gradients across replicas inside `apply()` when called in a replica
context (verified in tests/test_training.py). The loop needs the summed gradients earlier, to
clip by their global norm and to skip non-finite steps on values every replica agrees on
(Keras' own `global_clipnorm` and LossScaleOptimizer's finite check look at one replica's
un-reduced gradients). So the loop reduces once and these subclasses skip Keras' second sum.
"""

from __future__ import annotations

import keras

from jukebox_tf.training.config import TrainConfig
from jukebox_tf.training.schedule import WarmupDecay


class _GradientsAlreadySummed:
    def _all_reduce_sum_gradients(self, grads_and_vars):
        return list(grads_and_vars)


class Adam(_GradientsAlreadySummed, keras.optimizers.Adam):
    """keras.optimizers.Adam whose apply() takes gradients already summed over replicas."""


class AdamW(_GradientsAlreadySummed, keras.optimizers.AdamW):
    """keras.optimizers.AdamW whose apply() takes gradients already summed over replicas."""


def build_optimizer(config: TrainConfig) -> keras.optimizers.Optimizer:
    """Adam (AdamW when weight_decay > 0) on the WarmupDecay schedule; wrapped in a
    LossScaleOptimizer for mixed precision. Create it inside `strategy.scope()`."""
    schedule = WarmupDecay(config.learning_rate, config.warmup_steps, config.steps, config.decay)
    kwargs = dict(learning_rate=schedule, beta_1=config.adam_beta_1, beta_2=config.adam_beta_2)
    if config.weight_decay > 0:
        optimizer = AdamW(weight_decay=config.weight_decay, **kwargs)
    else:
        optimizer = Adam(**kwargs)
    if config.mixed_precision:
        optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
    return optimizer


def inner_optimizer(optimizer: keras.optimizers.Optimizer) -> keras.optimizers.Optimizer:
    """The optimizer that applies updates (the wrapped one under loss scaling)."""
    if isinstance(optimizer, keras.optimizers.LossScaleOptimizer):
        return optimizer.inner_optimizer
    return optimizer
