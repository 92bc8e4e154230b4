"""The vector-quantisation bottleneck: a codebook updated by EMA, with random restarts.

Per level, x [B, T, D] is flattened to N = B*T vectors and:
  codes      = argmin_k |x|^2 - 2 x.E_k + |E_k|^2 = argmax_k x.E_k - |E_k|^2 / 2   int32 [B, T]
  training:    (first batch) E <- candidates drawn from x
               counts_k = #{n: code_n = k}, sums_k = sum of those x_n  (all-reduced over replicas)
               k_sum  <- mu k_sum  + (1 - mu) sums;  k_elem <- mu k_elem + (1 - mu) counts
               E_k    <- k_sum_k / k_elem_k  if k_elem_k >= threshold, else a random candidate
  quantized  = E[codes] (with the updated codebook), passed straight-through: x + sg(q - x)
  commit     = mean((sg(q) - x)^2)

The codebook is never touched by gradients. Restart candidates are rows of the GLOBAL batch
picked by a stateless RNG keyed on (seed, update count): each replica contributes the rows it
holds and an all-reduce assembles them, so every replica (and a single process fed the same
global batch) gets the same codebook, step after step.
"""

from __future__ import annotations

import math

import keras
import tensorflow as tf

from jukebox_tf.layers import PACKAGE


def _replica_info():
    """(replica context or None, number of replicas, this replica's index)."""
    ctx = tf.distribute.get_replica_context()
    if ctx is None:  # cross-replica context: this is a single, whole-batch computation
        return None, 1, 0
    return ctx, ctx.num_replicas_in_sync, ctx.replica_id_in_sync_group


def _all_reduce_sum(ctx, value):
    return value if ctx is None or ctx.num_replicas_in_sync == 1 else ctx.all_reduce("sum", value)


def global_candidates(x, count: int, seed, ctx=None, num_replicas: int = 1, replica_id=0):
    """`count` rows of the global batch (all replicas' x stacked in replica order), chosen with
    replacement by a stateless RNG, plus noise of std 0.01/sqrt(D) so repeats differ.

    x: float32 [N, D] (this replica's rows) -> [count, D], identical on every replica.
    """
    n_local = tf.shape(x)[0]
    index = tf.random.stateless_uniform([count], seed, 0, n_local * num_replicas, dtype=tf.int32)
    local = index - replica_id * n_local
    mine = tf.logical_and(local >= 0, local < n_local)
    rows = tf.gather(x, tf.clip_by_value(local, 0, n_local - 1))
    rows = _all_reduce_sum(ctx, rows * tf.cast(mine, x.dtype)[:, None])
    width = x.shape[-1]
    noise = tf.random.stateless_normal([count, width], seed + 1, dtype=x.dtype)
    return rows + noise * (0.01 / math.sqrt(width))


@keras.saving.register_keras_serializable(PACKAGE)
class BottleneckBlock(keras.layers.Layer):
    """One level's codebook of `k_bins` x `emb_width` vectors."""

    def __init__(self, k_bins: int, emb_width: int, mu: float = 0.99, threshold: float = 1.0,
                 seed: int = 0, **kwargs):
        super().__init__(dtype="float32", **{k: v for k, v in kwargs.items() if k != "dtype"})
        self.k_bins, self.emb_width, self.mu, self.threshold, self.seed = (
            k_bins, emb_width, mu, threshold, seed)
        self.frozen = False  # True: training neither updates nor restarts the codebook

    def build(self, input_shape=None):
        # ONLY_FIRST_REPLICA: replicas compute identical values (all-reduced statistics, shared
        # candidates), and assignment in replica context needs an aggregation to be allowed.
        def state(name, shape, dtype="float32"):
            return self.add_weight(name=name, shape=shape, dtype=dtype, initializer="zeros",
                                   trainable=False, aggregation="only_first_replica")

        self.k = state("codebook", (self.k_bins, self.emb_width))
        self.k_sum = state("k_sum", (self.k_bins, self.emb_width))
        self.k_elem = state("k_elem", (self.k_bins,))
        self.initialized = state("initialized", (), "int32")
        self.updates = state("updates", (), "int32")
        super().build(input_shape)

    # -- the pieces, each usable on its own (and tested against numpy) --

    def scores(self, x):
        """x [N, D] -> x.E_k - |E_k|^2 / 2 [N, K], one matmul of [x, 1] by [E, -|E|^2 / 2]:
        |x - E_k|^2 = |x|^2 - 2 score_k: the nearest code scores highest, and ranking codes
        takes no pass over [N, K] besides the matmul's."""
        k = tf.convert_to_tensor(self.k)
        x1 = tf.concat([x, tf.ones_like(x[:, :1])], 1)
        k1 = tf.concat([k, -0.5 * tf.reduce_sum(k * k, 1, keepdims=True)], 1)
        return tf.matmul(x1, k1, transpose_b=True)

    def quantise(self, x):
        """x [N, D] -> (codes int32 [N], mean distance to the nearest code)."""
        scores = self.scores(x)
        fit = tf.reduce_mean(tf.reduce_sum(x * x, 1) - 2.0 * tf.reduce_max(scores, 1))
        return tf.argmax(scores, axis=1, output_type=tf.int32), fit

    def dequantise(self, codes):
        """codes int32 [...] -> vectors [..., D]."""
        return tf.gather(tf.convert_to_tensor(self.k), codes)

    def _seed(self):
        return tf.stack([tf.constant(self.seed, tf.int32), tf.convert_to_tensor(self.updates)])

    def update_codebook(self, x, ctx=None, num_replicas=1, replica_id=0):
        """One training step of the codebook: initialise it from the batch on the first call,
        assign codes, EMA-update, restart dead codes. No tf.cond: MirroredStrategy allows no
        all-reduce inside control flow, so the first-call initialisation is a tf.where.

        x [N, D] -> (codes int32 [N], fit, metrics); statistics are global over replicas.
        """
        candidates = global_candidates(x, self.k_bins, self._seed(), ctx, num_replicas,
                                       replica_id)
        ready = self.initialized > 0
        self.k.assign(tf.where(ready, tf.convert_to_tensor(self.k), candidates))
        self.k_sum.assign(tf.where(ready, tf.convert_to_tensor(self.k_sum), candidates))
        self.k_elem.assign(tf.where(ready, tf.convert_to_tensor(self.k_elem),
                                    tf.ones([self.k_bins])))
        self.initialized.assign(1)

        codes, fit = self.quantise(x)
        onehot = tf.one_hot(codes, self.k_bins, dtype=x.dtype)  # [N, K]
        batch_sum = _all_reduce_sum(ctx, tf.matmul(onehot, x, transpose_a=True))  # [K, D]
        batch_count = _all_reduce_sum(ctx, tf.reduce_sum(onehot, 0))  # [K]
        old_k = tf.convert_to_tensor(self.k)
        k_sum = self.mu * self.k_sum + (1.0 - self.mu) * batch_sum
        k_elem = self.mu * self.k_elem + (1.0 - self.mu) * batch_count
        alive = k_elem >= self.threshold
        new_k = tf.where(alive[:, None], k_sum / tf.maximum(k_elem, 1e-12)[:, None], candidates)
        self.k_sum.assign(k_sum)
        self.k_elem.assign(k_elem)
        self.k.assign(new_k)
        self.updates.assign_add(1)
        return codes, fit, {
            "alive": tf.reduce_sum(tf.cast(alive, tf.float32)),
            "codebook_change": tf.norm(new_k - old_k) / math.sqrt(self.k_bins * self.emb_width),
            "batch_count": batch_count}

    def call(self, x, training=False):
        """x [B, T, D] -> dict: codes int32 [B, T], quantized [B, T, D] (straight-through),
        commit_loss, and metrics (fit, usage, entropy_bits, perplexity, ...)."""
        x = tf.cast(x, tf.float32)
        shape = tf.shape(x)
        flat = tf.reshape(x, [-1, self.emb_width])
        metrics = {"prenorm": tf.norm(flat - tf.reduce_mean(flat)) / tf.sqrt(
            tf.cast(tf.size(flat), tf.float32))}
        if training and not self.frozen:
            codes, metrics["fit"], update = self.update_codebook(flat, *_replica_info())
            counts = update.pop("batch_count")
            metrics.update(update)
        else:
            codes, metrics["fit"] = self.quantise(flat)
            counts = tf.reduce_sum(tf.one_hot(codes, self.k_bins), 0)
        probs = counts / tf.maximum(tf.reduce_sum(counts), 1.0)
        entropy = -tf.reduce_sum(tf.where(probs > 0, probs * tf.math.log(probs), 0.0)) / math.log(2)
        metrics.update(usage=tf.reduce_sum(tf.cast(counts > 0, tf.float32)),
                       entropy_bits=entropy, perplexity=tf.pow(2.0, entropy))
        quantized = self.dequantise(codes)
        commit = tf.reduce_mean(tf.square(tf.stop_gradient(quantized) - flat))
        quantized = flat + tf.stop_gradient(quantized - flat)
        return {"codes": tf.reshape(codes, shape[:2]),
                "quantized": tf.reshape(quantized, shape),
                "commit_loss": commit,
                "metrics": metrics}

    def get_config(self):
        config = super().get_config() | {"k_bins": self.k_bins, "emb_width": self.emb_width,
                                         "mu": self.mu, "threshold": self.threshold,
                                         "seed": self.seed}
        config.pop("dtype", None)
        return config
