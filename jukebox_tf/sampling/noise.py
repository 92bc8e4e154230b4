"""Counter-based random numbers in plain integer ops: the same bits under XLA and without it.

TF's stateless generators differ between the two (Philox's kernel and its XLA lowering give
other numbers; Threefry exists only under XLA), so a sampler compiled by default and a
SavedModel run uncompiled on stock TF Serving would draw other tokens for the same seed. Here a
number is a hash of (key, position, counter): murmur3's 32-bit finalizer applied twice to the
counter, with two words derived from the key and the position between the rounds. Only
uint32 multiplies, shifts and xors, which both runtimes compute exactly alike.

A key is int64 [2] (or int64 [B, 2], one per row); `fold_in` derives independent keys, as
`tf.random.experimental.stateless_fold_in` does.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

_M1, _M2 = np.uint32(0x85EBCA6B), np.uint32(0xC2B2AE35)  # murmur3's finalizer
_GOLDEN = np.uint32(0x9E3779B9)
_FOLD_DOMAIN = np.uint32(0x2545F491)  # keeps fold_in's words apart from the noise's


def _fmix(h):
    """murmur3's 32-bit finalizer: a bijection of uint32 with full avalanche."""
    h = tf.bitwise.bitwise_xor(h, tf.bitwise.right_shift(h, np.uint32(16))) * _M1
    h = tf.bitwise.bitwise_xor(h, tf.bitwise.right_shift(h, np.uint32(13))) * _M2
    return tf.bitwise.bitwise_xor(h, tf.bitwise.right_shift(h, np.uint32(16)))


def _words(x) -> tuple[tf.Tensor, tf.Tensor]:
    """int64 [...] -> its low and high 32 bits as uint32 [...] (int64 casts wrap to uint32)."""
    x = tf.cast(x, tf.int64)
    return tf.cast(x, tf.uint32), tf.cast(tf.bitwise.right_shift(x, 32), tf.uint32)


def _stream(key, position, domain=np.uint32(0)) -> tuple[tf.Tensor, tf.Tensor]:
    """The two uint32 words [...] that pick the stream of key int64 [..., 2] at int position."""
    k0, k1 = _words(key[..., 0])
    k2, k3 = _words(key[..., 1])
    p_lo, p_hi = _words(position)
    p_lo = tf.bitwise.bitwise_xor(p_lo, domain)
    s1 = _fmix(tf.bitwise.bitwise_xor(k0, _fmix(tf.bitwise.bitwise_xor(k1, p_lo))))
    s2 = _fmix(tf.bitwise.bitwise_xor(k2, _fmix(tf.bitwise.bitwise_xor(k3, p_hi)) +
                                      p_lo * _GOLDEN))
    return s1, s2


def _bits(s1, s2, counter) -> tf.Tensor:
    """uint32 bits of counter uint32 [...] in the stream (s1, s2), broadcast together."""
    return _fmix(_fmix(tf.bitwise.bitwise_xor(counter, s1)) + s2)


def _counter(n) -> tf.Tensor:
    """uint32 [n]: 0, 1, ... (TF's CPU kernels have no uint32 range)."""
    return tf.cast(tf.range(n), tf.uint32)


def uniform(key, position, shape) -> tf.Tensor:
    """float32 `shape` in (0, 1), a function of (key, position) only.

    key int64 [2]: element i of the flattened shape is counter i. key int64 [B, 2] with shape
    [B, ...]: row b is what key[b] gives a shape of one row, whatever else is in the batch.
    """
    key = tf.convert_to_tensor(key, tf.int64)
    shape = tf.convert_to_tensor(shape, tf.int32)
    s1, s2 = _stream(key, position)
    if key.shape.rank == 2:
        row = shape[1:]
        counter = tf.reshape(_counter(tf.reduce_prod(row)), row)
        rank = counter.shape.rank if counter.shape.rank is not None else 1
        s1 = tf.reshape(s1, [-1] + [1] * rank)
        s2 = tf.reshape(s2, [-1] + [1] * rank)
    else:
        counter = tf.reshape(_counter(tf.reduce_prod(shape)), shape)
    bits = _bits(s1, s2, counter)
    # 23 random bits as an odd multiple of 2^-24: exact in float32, never 0 or 1.
    odd = tf.cast(tf.bitwise.right_shift(bits, np.uint32(9)), tf.float32) * 2.0 + 1.0
    return odd * np.float32(2.0 ** -24)


def fold_in(key, data) -> tf.Tensor:
    """key int64 [..., 2] and int data -> new keys int64 [..., 2], independent of the key's own
    stream and of the keys other data give."""
    s1, s2 = _stream(tf.convert_to_tensor(key, tf.int64), data, _FOLD_DOMAIN)
    bits = tf.cast(_bits(s1[..., None], s2[..., None], _counter(4)), tf.int64)
    return tf.bitwise.bitwise_or(bits[..., 0::2], tf.bitwise.left_shift(bits[..., 1::2], 32))
