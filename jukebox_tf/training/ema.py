"""Exponential moving average of the trainable weights, kept in its own checkpointed object."""

from __future__ import annotations

import tensorflow as tf


def tf_variable(variable) -> tf.Variable:
    """The tf.Variable (a distributed one under a strategy) behind a Keras 3 variable."""
    return variable if isinstance(variable, tf.Variable) else variable.value


class ExponentialMovingAverage(tf.Module):
    """shadow <- d_t * shadow + (1 - d_t) * weight after the t-th applied update, with
    d_t = min(decay, (1 + t) / (10 + t)).

    The warm-up is tf.train.ExponentialMovingAverage's `num_updates` one: a fixed 0.999 from
    the start would leave 0.999^t of the random initial weights in the average (47% after 760
    steps), so short runs would evaluate and export noise. Create it inside `strategy.scope()`
    so the shadows are mirrored like the weights; they start equal to the weights.

    `frozen`: indices of `variables` that training does not change; their shadows keep the
    value they have (after `reset`) bit for bit, where d * w + (1 - d) * w may round.
    """

    def __init__(self, variables, decay: float, frozen=()):
        super().__init__(name="ema")
        self.decay = float(decay)
        self._frozen = frozenset(frozen)
        # The scope's strategy: update() runs outside the scope, where get_strategy() is the
        # default one.
        self._strategy = tf.distribute.get_strategy()
        self.shadows = [tf.Variable(tf_variable(v).read_value(), trainable=False,
                                    name=f"ema_{i}") for i, v in enumerate(variables)]
        self.updates = tf.Variable(0, dtype=tf.int64, trainable=False, name="ema_updates")

    def update(self, variables):
        """Call in cross-replica context: each device's shadow follows that device's weight."""
        t = tf.cast(self.updates + 1, tf.float32)
        decay = tf.minimum(self.decay, (1.0 + t) / (10.0 + t))

        def step(shadow, weight):
            return shadow.assign(decay * shadow + (1.0 - decay) * tf.cast(weight, shadow.dtype))

        for i, (shadow, weight) in enumerate(zip(self.shadows, variables)):
            if i not in self._frozen:
                self._strategy.extended.update(shadow, step, args=(tf_variable(weight),),
                                               group=False)
        self.updates.assign_add(1)

    def reset(self, variables):
        """Makes the shadows equal to `variables` again (after the weights were loaded)."""
        for shadow, weight in zip(self.shadows, variables):
            shadow.assign(tf_variable(weight).read_value())

    def copy_to(self, variables):
        """Overwrites `variables` with the averages (for evaluation or export)."""
        for shadow, weight in zip(self.shadows, variables):
            weight.assign(shadow)
