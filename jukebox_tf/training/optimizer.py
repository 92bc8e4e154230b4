"""Keras 3 Adam/AdamW for a loop that all-reduces gradients itself.

Keras 3's TF optimizer sums gradients across replicas inside `apply()` when called in a replica
context (verified in tests/test_training.py). The loop needs the summed gradients earlier, to
clip by their global norm and to skip non-finite steps on values every replica agrees on
(Keras' own `global_clipnorm` and LossScaleOptimizer's finite check look at one replica's
un-reduced gradients). So the loop reduces once and these subclasses skip Keras' second sum.
"""

from __future__ import annotations

import keras
import tensorflow as tf

from jukebox_tf.training.config import TrainConfig
from jukebox_tf.training.schedule import WarmupDecay


class _GradientsAlreadySummed:
    def _all_reduce_sum_gradients(self, grads_and_vars):
        return list(grads_and_vars)


class _FusedAdamUpdate:
    """Applies Adam to each variable with TF's single ResourceApplyAdam kernel, its scalars
    (learning rate, beta powers) computed once per step.

    Keras 3's Adam.update_step emits ~40 graph ops per variable, recomputing the bias
    corrections each time: for the VQ-VAE's 330 variables that tripled the time to trace and
    first-run the train step. ResourceApplyAdam is the same update (m, v EMAs; lr * sqrt(1 -
    beta2^t) / (1 - beta1^t) * m / (sqrt(v) + epsilon)), and is not used with amsgrad.
    """

    def _distributed_tf_update_step(self, distribution, grads_and_vars, learning_rate):
        # Runs once per step, in the cross-replica (merge) context, like Keras' own version.
        if self.amsgrad:
            return super()._distributed_tf_update_step(distribution, grads_and_vars,
                                                       learning_rate)
        # learning_rate may be per-replica here; `update` hands each device its own value.
        step = tf.cast(self.iterations + 1, tf.float32)
        beta_powers = (tf.pow(tf.constant(self.beta_1, tf.float32), step),
                       tf.pow(tf.constant(self.beta_2, tf.float32), step))
        for grad, var in grads_and_vars:
            distribution.extended.update(var, self._apply_adam,
                                         args=(grad, learning_rate) + beta_powers, group=False)

    def _apply_adam(self, variable, gradient, lr, beta_1_power, beta_2_power):
        index = self._get_variable_index(variable)
        dtype = variable.dtype
        return tf.raw_ops.ResourceApplyAdam(
            var=variable.handle, m=self._momentums[index].value.handle,
            v=self._velocities[index].value.handle,
            beta1_power=tf.cast(beta_1_power, dtype), beta2_power=tf.cast(beta_2_power, dtype),
            lr=tf.cast(lr, dtype), beta1=tf.constant(self.beta_1, dtype),
            beta2=tf.constant(self.beta_2, dtype), epsilon=tf.constant(self.epsilon, dtype),
            grad=tf.cast(gradient, dtype))


class Adam(_GradientsAlreadySummed, _FusedAdamUpdate, keras.optimizers.Adam):
    """keras.optimizers.Adam whose apply() takes gradients already summed over replicas."""


class AdamW(_GradientsAlreadySummed, _FusedAdamUpdate, keras.optimizers.AdamW):
    """keras.optimizers.AdamW whose apply() takes gradients already summed over replicas."""


def build_optimizer(config: TrainConfig) -> keras.optimizers.Optimizer:
    """Adam (AdamW when weight_decay > 0) on the WarmupDecay schedule; wrapped in a
    LossScaleOptimizer for float16 mixed precision. Create it inside `strategy.scope()`."""
    schedule = WarmupDecay(config.learning_rate, config.warmup_steps, config.steps, config.decay)
    kwargs = dict(learning_rate=schedule, beta_1=config.adam_beta_1, beta_2=config.adam_beta_2)
    if config.weight_decay > 0:
        optimizer = AdamW(weight_decay=config.weight_decay, **kwargs)
    else:
        optimizer = Adam(**kwargs)
    if config.loss_scaling:
        optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
    return optimizer


def inner_optimizer(optimizer: keras.optimizers.Optimizer) -> keras.optimizers.Optimizer:
    """The optimizer that applies updates (the wrapped one under loss scaling)."""
    if isinstance(optimizer, keras.optimizers.LossScaleOptimizer):
        return optimizer.inner_optimizer
    return optimizer
