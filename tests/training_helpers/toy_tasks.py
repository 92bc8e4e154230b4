"""Tiny deterministic tasks for the training-loop tests (imported by tests and worker scripts).

Global batch `s` (the s-th element a fresh dataset yields) is a pure function of (seed, s).
Each input pipeline yields, for every s, the slices of that global batch for its local replicas
in order: so under any strategy replica r trains on the r-th slice of the same global batch,
and a 2-replica or 2-worker run sees exactly the batches of a single-device run.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf
import keras

W_TRUE = np.array([[1.5], [-2.0], [0.5], [3.0]], np.float32)


class Regression:
    """y = x @ W_TRUE + 0.5 + noise, fitted by Dense layers; loss = MSE over the batch.

    fixed_data: every global batch is the same (seed-independent), so data order does not
    matter. nan_steps: data indices whose loss is NaN on the replica(s) holding the second
    half of the global batch. Each media_summaries call (media_every=1: every step) appends
    (step, weights) to `self.trajectory` and calls `hook(model, step)` if given. `seeds` lists
    the seeds `dataset` was called with; `model` is the last model built.
    """

    name = "toy_regression"

    def __init__(self, global_batch_size=8, dim=4, hidden=0, fixed_data=False, nan_steps=(),
                 hook=None):
        self.global_batch_size, self.dim, self.hidden = global_batch_size, dim, hidden
        self.fixed_data, self.nan_steps, self.hook = fixed_data, tuple(nan_steps), hook
        self.trajectory = []
        self.initial_weights = None
        self.seeds = []
        self.model = None

    def build(self):
        layers = [keras.Input((self.dim,))]
        if self.hidden:
            layers.append(keras.layers.Dense(self.hidden, activation="tanh"))
        layers.append(keras.layers.Dense(1))
        self.model = keras.Sequential(layers)
        self.initial_weights = weights(self.model)
        return self.model

    def global_batch(self, seed, s):
        data_seed = tf.stack([tf.constant(0 if self.fixed_data else seed, tf.int64),
                              0 if self.fixed_data else s])
        x = tf.random.stateless_normal([self.global_batch_size, self.dim], data_seed)
        noise = 0.1 * tf.random.stateless_normal([self.global_batch_size, 1], data_seed + 1)
        y = tf.matmul(x, W_TRUE[: self.dim]) + 0.5 + noise
        # Only the second half of a poisoned batch: under 2 replicas, one sees NaN, one does not.
        poisoned = tf.reduce_any(tf.equal(s, tf.constant(self.nan_steps or [-1], tf.int64)))
        poison = poisoned & (tf.range(self.global_batch_size) >= self.global_batch_size // 2)
        return {"x": x, "y": y, "poison": poison,
                "index": tf.fill([self.global_batch_size], s)}

    def dataset(self, ctx, seed):
        self.seeds.append(seed)
        local = ctx.num_replicas_in_sync // ctx.num_input_pipelines
        per = ctx.get_per_replica_batch_size(self.global_batch_size)
        first = ctx.input_pipeline_id * local

        def element(e):
            s, k = e // local, e % local
            batch = self.global_batch(seed, s)
            return {key: value[(first + k) * per: (first + k + 1) * per]
                    for key, value in batch.items()}

        return tf.data.Dataset.counter().map(element)

    def loss(self, model, batch, training):
        pred = tf.cast(model(batch["x"], training=training), tf.float32)
        mse = tf.reduce_mean(tf.square(pred - batch["y"]))
        poisoned = tf.reduce_any(batch["poison"])
        loss = mse * tf.where(poisoned, np.float32("nan"), 1.0)
        return loss, {"mae": tf.reduce_mean(tf.abs(pred - batch["y"]))}

    def media_summaries(self, model, batch, step):
        tf.summary.histogram("pred", model(batch["x"]))
        self.trajectory.append((step, weights(model)))
        if self.hook:
            self.hook(model, step)

    def config_dict(self):
        return {"global_batch_size": self.global_batch_size, "dim": self.dim}


def weights(model):
    return [np.array(v) for v in model.trainable_variables]
