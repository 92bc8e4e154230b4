"""Softmax attention over [..., time, heads, head_dim] tensors and the cache write of one
sampling step; the attention layers that use them are the priors' (prior/factorized_attention.py).
"""

from __future__ import annotations

import tensorflow as tf

from jukebox_tf.layers.graph import in_xla_context

MASKED_LOGIT = -1e9  # as the original: finite, so a row with every key masked gives no NaN


def causal_mask(q_len, k_len):
    """bool [q_len, k_len]: key j is visible to query i iff j <= i."""
    return tf.range(k_len)[None, :] <= tf.range(q_len)[:, None]


def attention_probs(q, k, mask=None) -> tf.Tensor:
    """Softmax weights float32 [..., heads, Tq, Tk] of q [..., Tq, heads, head_dim] (already
    scaled) over k [..., Tk, heads, head_dim]; mask as `attend`'s."""
    logits = tf.cast(tf.einsum("...qhd,...khd->...hqk", q, k), tf.float32)
    if mask is not None:
        logits = tf.where(mask, logits, MASKED_LOGIT)
    return tf.nn.softmax(logits, axis=-1)


def attend(q, k, v, mask=None, zero_empty: bool = False, dropout=None, training=None):
    """Softmax attention along the axis before the heads (softmax in float32).

    q: [..., Tq, heads, head_dim] (already scaled), k, v: [..., Tk, heads, head_dim],
    mask: bool broadcastable to [..., heads, Tq, Tk] -> [..., Tq, heads, head_dim].
    zero_empty: a query that sees no key gets zeros (the original's zero-padded block).
    """
    weights = attention_probs(q, k, mask)
    if zero_empty:
        weights *= tf.cast(tf.reduce_any(mask, axis=-1, keepdims=True), weights.dtype)
    weights = tf.cast(weights, v.dtype)
    if dropout is not None:
        weights = dropout(weights, training=training)
    return tf.einsum("...hqk,...khd->...qhd", weights, v)


def attend_one(q, k, v, valid=None):
    """Softmax attention of one query per row, without transposes (elementwise products and
    reductions, which XLA fuses): q [batch, heads, head_dim] (already scaled), k, v
    [batch, keys, heads, head_dim], valid bool [keys] or None -> [batch, heads, head_dim].
    Computed in float32 like `attend`."""
    dtype = v.dtype
    q, k, v = (tf.cast(t, tf.float32) for t in (q, k, v))
    logits = tf.reduce_sum(k * q[:, None], axis=-1)  # [batch, keys, heads]
    if valid is not None:
        logits = tf.where(valid[None, :, None], logits, MASKED_LOGIT)
    weights = tf.exp(logits - tf.reduce_max(logits, axis=1, keepdims=True))
    weights /= tf.reduce_sum(weights, axis=1, keepdims=True)
    return tf.cast(tf.reduce_sum(weights[..., None] * v, axis=1), dtype)


def write_slot(cache, new, slot):
    """cache [batch, n, n_state] with new [batch, 1, n_state] written at slot (int scalar).

    Under XLA a dynamic-update-slice, done in place on the loop-carried buffer; XLA's scatter
    (what tensor_scatter_nd_update lowers to) copies the whole cache each step instead, which
    for a column cache [batch, n_ctx, n_state] costs more than the rest of the step."""
    new = tf.cast(new, cache.dtype)
    if in_xla_context():
        from tensorflow.compiler.tf2xla.python import xla as tfxla
        return tfxla.dynamic_update_slice(cache, new, tf.stack([0, slot, 0]))
    batch = tf.shape(cache)[0]
    index = tf.stack([tf.range(batch), tf.fill([batch], slot)], axis=1)
    return tf.tensor_scatter_nd_update(cache, index, new[:, 0])
