"""Exponential moving average of the trainable weights, kept in its own checkpointed object."""

from __future__ import annotations

import tensorflow as tf


def tf_variable(variable) -> tf.Variable:
    """The tf.Variable (a distributed one under a strategy) behind a Keras 3 variable."""
    return variable if isinstance(variable, tf.Variable) else variable.value


class ExponentialMovingAverage(tf.Module):
    """shadow <- decay * shadow + (1 - decay) * weight, after each applied update.

    Create it inside `strategy.scope()` so the shadows are mirrored like the weights. The
    shadows start equal to the weights (no bias correction: `decay` is fixed).
    """

    def __init__(self, variables, decay: float):
        super().__init__(name="ema")
        self.decay = float(decay)
        # The scope's strategy: update() runs outside the scope, where get_strategy() is the
        # default one.
        self._strategy = tf.distribute.get_strategy()
        self.shadows = [tf.Variable(tf_variable(v).read_value(), trainable=False,
                                    name=f"ema_{i}") for i, v in enumerate(variables)]

    def update(self, variables):
        """Call in cross-replica context: each device's shadow follows that device's weight."""
        decay = self.decay

        def step(shadow, weight):
            return shadow.assign(decay * shadow + (1.0 - decay) * tf.cast(weight, shadow.dtype))

        for shadow, weight in zip(self.shadows, variables):
            self._strategy.extended.update(shadow, step, args=(tf_variable(weight),), group=False)

    def copy_to(self, variables):
        """Overwrites `variables` with the averages (for evaluation or export)."""
        for shadow, weight in zip(self.shadows, variables):
            weight.assign(shadow)
