"""The compiled train step: the same code under every tf.distribute strategy.

Per replica: loss and gradients of loss / num_replicas, then ONE all-reduce (SUM) of the
gradients together with the loss and the stop flag, so every replica holds the gradient of the
global mean loss. From those identical values: global norm, clipping, and the decision to skip
the update when the loss or the norm is not finite -- identical on every replica and worker,
so they all take the same branch. The update itself runs per replica (Keras' apply), the EMA
and the loss-scale bookkeeping in cross-replica context.
"""

from __future__ import annotations

import keras
import tensorflow as tf

from jukebox_tf.training.config import TrainConfig
from jukebox_tf.training.optimizer import inner_optimizer

SUM = tf.distribute.ReduceOp.SUM
MEAN = tf.distribute.ReduceOp.MEAN


class TrainStep:
    """`step(iterator, stop_requested) -> (metrics, batch)`.

    metrics: dict of scalar tensors: "loss", the task's metrics (replica means), "grad_norm"
    (after summing, before clipping), "learning_rate" (of this update), "skipped_steps",
    "stop" (some worker asked to stop), "loss_scale" when mixed. batch: the per-replica batch
    the step trained on (returning it costs nothing and gives media summaries real inputs).
    """

    def __init__(self, task, state, config: TrainConfig, strategy: tf.distribute.Strategy):
        """state: the loop's _TrainState (model, optimizer, ema, step, skipped, updated)."""
        self.task, self.model, self.strategy, self.ema = task, state.model, strategy, state.ema
        self.variables = state.updated
        self.clip_norm = config.clip_norm
        self.step, self.skipped = state.step, state.skipped
        optimizer = state.optimizer
        self.loss_scaler = optimizer if isinstance(
            optimizer, keras.optimizers.LossScaleOptimizer) else None
        self.optimizer = inner_optimizer(optimizer)
        self._compiled = tf.function(self._step)

    def __call__(self, iterator, stop_requested: bool) -> tuple:
        return self._compiled(iterator, tf.constant(stop_requested))

    def _step(self, iterator, stop):
        batch = next(iterator)
        learning_rate = self.optimizer.learning_rate  # before apply(): the rate this update uses
        grads, ok, shared, metrics = self.strategy.run(self._gradients, args=(batch, stop))
        # `ok` and `shared` come from all-reduced values: the first local copy speaks for all.
        ok, shared = self._first_local(ok), self._first_local(shared)
        tf.cond(ok, lambda: self._apply(grads), self._skip)
        self.step.assign_add(1)
        out = dict(zip(self._metric_names,
                       tf.unstack(self.strategy.reduce(MEAN, metrics, axis=None))))
        out.update(shared, learning_rate=tf.cast(learning_rate, tf.float32),
                   skipped_steps=self.skipped.read_value())
        if self.loss_scaler is not None:
            out["loss_scale"] = tf.identity(self.loss_scaler.dynamic_scale)
        return out, batch

    def _first_local(self, value):
        return tf.nest.map_structure(
            lambda v: self.strategy.experimental_local_results(v)[0], value)

    def _gradients(self, batch, stop):
        ctx = tf.distribute.get_replica_context()
        variables = self.variables
        with tf.GradientTape() as tape:
            loss, metrics = self.task.loss(self.model, batch, training=True)
            loss = tf.cast(loss, tf.float32)
            # Summed over replicas, loss / n is the global mean; so are its summed gradients.
            scaled = loss / ctx.num_replicas_in_sync
            if self.loss_scaler is not None:
                scaled = self.loss_scaler.scale_loss(scaled)
        grads = tape.gradient(scaled, variables)
        # Like Keras, variables without a gradient get no update; which ones is known at trace
        # time (the same on every replica). Dense, because collectives reduce dense tensors.
        self._updated = [v for g, v in zip(grads, variables) if g is not None]
        grads = [tf.convert_to_tensor(g) for g in grads if g is not None]
        grads, mean_loss, stops = ctx.all_reduce(
            SUM, (grads, loss / ctx.num_replicas_in_sync, tf.cast(stop, tf.float32)))
        if self.loss_scaler is not None:
            scale = self.loss_scaler.dynamic_scale
            grads = [g / tf.cast(scale, g.dtype) for g in grads]
        norm = tf.linalg.global_norm(grads)
        ok = tf.math.is_finite(norm) & tf.math.is_finite(mean_loss)
        if self.clip_norm is not None:
            grads, _ = tf.clip_by_global_norm(grads, self.clip_norm, use_norm=norm)
        metrics = {**metrics, "loss": loss}
        # Stacked, so that one reduce (one collective) averages them all.
        self._metric_names = sorted(metrics)
        stacked = tf.stack([tf.cast(metrics[n], tf.float32) for n in self._metric_names])
        return grads, ok, {"grad_norm": norm, "stop": stops > 0}, stacked

    def _apply(self, grads):
        updated = self._updated
        self.strategy.run(lambda g: self.optimizer.apply(g, updated), args=(grads,))
        if self.ema is not None:
            self.ema.update(self.model.trainable_variables)
        if self.loss_scaler is not None:
            _grow_loss_scale(self.loss_scaler)

    def _skip(self):
        self.skipped.assign_add(1)
        if self.loss_scaler is not None:
            _shrink_loss_scale(self.loss_scaler)


# LossScaleOptimizer's own apply() decides on one replica's un-reduced gradients, which other
# replicas or workers may disagree with; the loop decides instead and keeps its bookkeeping.
def _grow_loss_scale(scaler):
    """Doubles the scale after `dynamic_growth_steps` finite steps in a row."""
    grow = tf.equal(scaler.step_counter, scaler.dynamic_growth_steps - 1)
    scale = scaler.dynamic_scale
    scaler.dynamic_scale.assign(tf.where(grow, scale * 2.0, scale))
    scaler.step_counter.assign(tf.where(grow, tf.zeros_like(scaler.step_counter.value),
                                        scaler.step_counter + 1))


def _shrink_loss_scale(scaler):
    scaler.step_counter.assign(0)
    scaler.dynamic_scale.assign(scaler.dynamic_scale * 0.5)
