"""Turning a prior's logits into a token: temperature, top-k and nucleus (top-p) filtering, and
a stateless draw, as the original's `filter_logits` + `Categorical(logits).sample()`.

Everything is vectorised over the batch and uses only ops XLA compiles (sort, gather, cumsum),
so it runs inside the compiled per-token loop.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from jukebox_tf.sampling import noise

FILTERED = float("-inf")  # the original's filter_value


def filter_logits(logits, top_k: int = 0, top_p: float = 0.0) -> tf.Tensor:
    """logits float [B, V] -> [B, V] with removed entries set to -inf.

    top_k > 0 keeps the tokens whose logit is at least the k-th largest (ties at the k-th value
    are all kept, as the original's `logits < topk[..., -1:]`). top_p > 0 keeps the smallest
    set of most likely tokens whose probability reaches top_p: a token is kept when the
    probability of the tokens ranked above it is <= top_p (so the most likely one always is).
    Both may be given; top-k is applied first (the original asserts only one is set).
    """
    logits = tf.convert_to_tensor(logits)
    vocab = logits.shape[-1]
    if top_k and top_k < vocab:
        kth = tf.math.top_k(logits, k=int(top_k), sorted=True).values[:, -1:]
        logits = tf.where(logits < kth, tf.cast(FILTERED, logits.dtype), logits)
    if top_p and top_p > 0.0:
        ranked = tf.sort(logits, axis=-1, direction="DESCENDING")
        probs = tf.nn.softmax(tf.cast(ranked, tf.float32), axis=-1)
        above = tf.cumsum(probs, axis=-1, exclusive=True)  # mass ranked strictly higher
        n_keep = tf.reduce_sum(tf.cast(above <= top_p, tf.int32), axis=-1, keepdims=True)
        # Compare against the last kept logit rather than scattering a mask back through the
        # sort: same result up to ties at the boundary (where the original's choice is
        # arbitrary too), and no inverse permutation.
        threshold = tf.gather(ranked, tf.maximum(n_keep, 1) - 1, batch_dims=1)
        logits = tf.where(logits < threshold, tf.cast(FILTERED, logits.dtype), logits)
    return logits


def process_logits(logits, temperature: float = 1.0, top_k: int = 0,
                   top_p: float = 0.0) -> tf.Tensor:
    """logits [B, V] -> float32 [B, V]: divided by the temperature, then filtered (the original's
    order, so top-p acts on the tempered distribution)."""
    logits = tf.cast(logits, tf.float32)
    if temperature != 1.0:
        logits = logits / temperature
    return filter_logits(logits, top_k, top_p)


def argmax(x, xla: bool = False) -> tf.Tensor:
    """int32 [B]: the first index of each row's maximum of x [B, V]. Under XLA on CPU as a max
    then a min over matching indices: 3-5x faster there than its variadic-reduce argmax."""
    if not xla:
        return tf.argmax(x, axis=-1, output_type=tf.int32)
    top = tf.reduce_max(x, axis=-1, keepdims=True)
    vocab = x.shape[-1]
    return tf.reduce_min(tf.where(x == top, tf.range(vocab), vocab), axis=-1)


def draw(logits, key, position, xla: bool = False) -> tf.Tensor:
    """One token per row of logits float32 [B, V] -> int32 [B], by Gumbel-max.

    key: int [2], shared by the rows (row i reads the noise stream at i * V), or int [B, 2],
    one per row (each row's noise is that of a batch of one with its key, so a row draws the
    same token whatever else is in the batch: what a server that merges requests needs). The
    noise is a function of (key, position) only (noise.py: the same bits under XLA and without
    it), so the same key gives the same tokens whatever the batching of the calls, cached or
    not, compiled or not. xla: the code runs under XLA (see argmax).
    """
    u = noise.uniform(key, position, tf.shape(logits))
    gumbel = -tf.math.log(-tf.math.log(u))
    return argmax(logits + gumbel, xla)


def pick(logits, key, position, temperature: float = 1.0, top_k: int = 0,
         top_p: float = 0.0, xla: bool = False) -> tf.Tensor:
    """logits [B, V] -> int32 [B]: greedy (argmax) when temperature == 0, else a draw from the
    tempered, filtered distribution. xla: the code runs under XLA (see argmax)."""
    if temperature == 0.0:
        return argmax(logits, xla)
    return draw(process_logits(logits, temperature, top_k, top_p), key, position, xla)


def seed_key(seed, *salts) -> tf.Tensor:
    """int seed (or an int [2] key) and optional int salts -> int64 [2] key; each salt is
    folded in, so e.g. (seed, level, window start) give independent streams."""
    key = tf.convert_to_tensor(seed)
    if key.shape.rank == 0:
        key = tf.stack([tf.cast(key, tf.int64), tf.constant(0, tf.int64)])
    key = tf.cast(key, tf.int64)
    for salt in salts:
        key = noise.fold_in(key, int(salt))
    return key


def row_seeds(seed, batch: int) -> np.ndarray:
    """int64 [batch]: one seed per sample. An int seed s gives s, s + 1, ...: sample i of a
    request with seed s is the sample a one-sample request with seed s + i gets."""
    seeds = np.asarray(seed, np.int64)
    if seeds.ndim == 0:
        return seeds + np.arange(batch, dtype=np.int64)
    if seeds.shape != (batch,):
        raise ValueError(f"give one seed, or one per sample ({batch}): got shape {seeds.shape}")
    return seeds


def row_keys(seeds, *salts) -> tf.Tensor:
    """int64 [B, 2]: seed_key of each row's seed with the same salts (draw's per-row keys)."""
    return tf.stack([seed_key(int(s), *salts) for s in np.asarray(seeds).reshape(-1)])
