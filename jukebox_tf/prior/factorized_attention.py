"""Factorized self-attention of the Jukebox priors, with a functional key/value cache.

A sequence of n_ctx positions is viewed as [blocks, block_ctx]. Attention kinds (the original's
attn_func): 0 dense causal; 1 row (causal, within the query's block); 2 column (causal, the
same in-block position in every block); 3 previous block (all of block b - 1; block 0 reads a
zero block, so its output is zero); 6 cross-attention to an encoder output (no mask); 7 prime
attention (causal, to the first `prime_attn_len` positions: the lyric prefix).

The training forward reshapes to [batch, blocks, block_ctx, heads, head_dim], so row and
previous-block attention cost O(n * block_ctx) and column attention O(n * blocks); only dense
attention builds [n, n] logits.

Sampling threads a cache dict {"key", "value"} of fixed-shape tensors [batch, cache_len, n_state]
through `call(x, cache=..., position=...)`, which returns (y, new_cache) and so works inside
`tf.while_loop` (and XLA). cache_len follows the kind: dense and column n_ctx (slot = position),
row block_ctx and previous-block 2 * block_ctx (ring buffers, slot = position % cache_len),
prime prime_attn_len, cross-attention the encoder's length (its keys, projected once by
`init_cache`). A chunk x of L tokens attends to concat(cache, chunk) with a mask derived from
the absolute position each slot holds, so one code path serves steps and chunks of any length.
A long prime instead goes through `call(x, cache=..., prime_length=P)`: the training forward
over positions [0, time), whose keys and values of [0, P) are then written into the cache once,
rather than chunks that each attend to (and rewrite) the whole cache.
"""

from __future__ import annotations

import math

import keras
import tensorflow as tf

from jukebox_tf.layers import PACKAGE
from jukebox_tf.layers.attention import (attend, attend_one, attention_probs, causal_mask,
                                         write_slot)
from jukebox_tf.layers.graph import build_once, dims
from jukebox_tf.layers.linear import linear
from jukebox_tf.prior.config import (ATTN_KINDS, BLOCKED_KINDS, COLUMN, CROSS, DENSE,
                                     PREV_BLOCK, PRIME, ROW, prime_attn_len)

_RING_KINDS = (ROW, PREV_BLOCK)  # caches that keep only the most recent positions


@keras.saving.register_keras_serializable(PACKAGE)
class FactorizedAttention(keras.layers.Layer):
    """One attention layer of kind `attn_kind`: [batch, time, width] -> [batch, time, width].

    Weights as the original: c_attn [width, 3 n_state] (for cross-attention: c_attn
    [width, n_state] for queries and c_enc_kv [width, 2 n_state] for the encoder's keys and
    values), c_proj [n_state, width].
    """

    def __init__(self, width: int, n_state: int, heads: int, n_ctx: int,
                 attn_kind: int = DENSE, blocks: int | None = None, encoder_dims: int = 0,
                 prime_len: int | None = None, init_scale: float = 1.0, zero_out: bool = False,
                 attn_dropout: float = 0.0, resid_dropout: float = 0.0, **kwargs):
        super().__init__(**kwargs)
        if attn_kind not in ATTN_KINDS:
            raise ValueError(f"attn_kind {attn_kind} is not one of {ATTN_KINDS}")
        if n_state % heads:
            raise ValueError(f"n_state={n_state} is not divisible by heads={heads}")
        if attn_kind in (*BLOCKED_KINDS, PRIME) and (not blocks or n_ctx % blocks):
            raise ValueError(f"attention kind {attn_kind} needs blocks dividing n_ctx={n_ctx}, "
                             f"got {blocks}")
        if attn_kind == CROSS and encoder_dims < 1:
            raise ValueError("cross-attention needs encoder_dims (the encoder output length)")
        if attn_kind == PRIME and not prime_len:
            raise ValueError("prime attention needs prime_len (the prefix length)")
        self.width, self.n_state, self.heads, self.n_ctx = width, n_state, heads, n_ctx
        self.attn_kind, self.blocks = attn_kind, blocks
        self.encoder_dims, self.prime_len = encoder_dims, prime_len
        self.init_scale, self.zero_out = init_scale, zero_out
        self.attn_dropout, self.resid_dropout = attn_dropout, resid_dropout
        cross = attn_kind == CROSS
        self.c_attn = linear(n_state if cross else 3 * n_state, init_scale, name="c_attn")
        self.c_enc_kv = linear(2 * n_state, init_scale, name="c_enc_kv") if cross else None
        self.c_proj = linear(width, init_scale, zero_out, name="c_proj")
        self.attn_drop = keras.layers.Dropout(attn_dropout) if attn_dropout > 0 else None
        self.resid_drop = keras.layers.Dropout(resid_dropout) if resid_dropout > 0 else None

    @property
    def head_dim(self) -> int:
        return self.n_state // self.heads

    @property
    def block_ctx(self) -> int | None:
        return self.n_ctx // self.blocks if self.blocks else None

    @property
    def cache_len(self) -> int:
        """Positions the sampling cache holds."""
        return {DENSE: self.n_ctx, ROW: self.block_ctx, COLUMN: self.n_ctx,
                PREV_BLOCK: 2 * (self.block_ctx or 0), CROSS: self.encoder_dims,
                PRIME: self.prime_attn_len}[self.attn_kind]

    @property
    def prime_attn_len(self) -> int | None:
        if self.attn_kind != PRIME:
            return None
        return prime_attn_len(self.prime_len, self.blocks, self.n_ctx)

    def build(self, input_shape):
        build_once(self.c_attn, input_shape)
        if self.c_enc_kv is not None:  # the encoder output comes projected to the prior's width
            build_once(self.c_enc_kv, (None, None, self.width))
        build_once(self.c_proj, tuple(input_shape[:-1]) + (self.n_state,))
        super().build(input_shape)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    # -- shapes ------------------------------------------------------------------------------

    def _split_heads(self, x):
        """[batch, time, n_state] -> [batch, time, heads, head_dim]."""
        return tf.reshape(x, dims(x)[:-1] + [self.heads, self.head_dim])

    def _to_blocks(self, x):
        """[batch, time, heads, head_dim] -> [batch, time // block_ctx, block_ctx, heads, hd]."""
        batch, time = dims(x)[:2]
        if isinstance(time, int) and time % self.block_ctx:
            raise ValueError(f"attention kind {self.attn_kind} needs a length divisible by "
                             f"block_ctx={self.block_ctx}, got {time}")
        return tf.reshape(x, [batch, -1, self.block_ctx, self.heads, self.head_dim])

    def _encoder_kv(self, encoder_kv):
        """Encoder output [batch, encoder_dims, width] -> keys, values [batch, encoder_dims,
        n_state]."""
        if encoder_kv is None:
            raise ValueError("cross-attention needs encoder_kv [batch, encoder_dims, width]")
        length = encoder_kv.shape[1]
        if length is not None and length != self.encoder_dims:
            raise ValueError(f"encoder_kv has length {length}, expected encoder_dims="
                             f"{self.encoder_dims}")
        return tf.split(self.c_enc_kv(encoder_kv), 2, axis=-1)

    # -- training forward --------------------------------------------------------------------

    def _attend_full(self, q, k, v, training):
        """q, k, v [batch, time, heads, head_dim], positions 0.. -> same shape."""
        kind = self.attn_kind

        def run(q, k, v, mask=None):
            return attend(q, k, v, mask, dropout=self.attn_drop, training=training)

        if kind in (DENSE, CROSS, PRIME):
            if kind == PRIME:
                k, v = k[:, :self.prime_attn_len], v[:, :self.prime_attn_len]
            mask = None if kind == CROSS else causal_mask(tf.shape(q)[1], tf.shape(k)[1])
            return run(q, k, v, mask)
        out_shape = dims(q)
        q, k, v = self._to_blocks(q), self._to_blocks(k), self._to_blocks(v)
        if kind == ROW:
            out = run(q, k, v, causal_mask(self.block_ctx, self.block_ctx))
        elif kind == PREV_BLOCK:
            # Block 0 reads a zero block: uniform weights over zero values give zero output.
            def shift(t):
                return tf.concat([tf.zeros_like(t[:, :1]), t[:, :-1]], axis=1)

            out = run(q, shift(k), shift(v))
        else:  # COLUMN: the block axis becomes the sequence, in-block positions a batch axis
            perm = [0, 2, 1, 3, 4]
            n_blocks = tf.shape(q)[1]
            out = run(*(tf.transpose(t, perm) for t in (q, k, v)),
                      causal_mask(n_blocks, n_blocks))
            out = tf.transpose(out, perm)
        return tf.reshape(out, out_shape)

    # -- cached forward ----------------------------------------------------------------------

    def _visible(self, q_pos, k_pos):
        """Whether the key at absolute position k_pos is visible to the query at q_pos."""
        kind, bc = self.attn_kind, self.block_ctx
        if kind == PREV_BLOCK:
            return k_pos // bc == q_pos // bc - 1
        causal = k_pos <= q_pos
        if kind == ROW:
            return causal & (k_pos // bc == q_pos // bc)
        if kind == COLUMN:
            return causal & (k_pos % bc == q_pos % bc)
        if kind == PRIME:
            return causal & (k_pos < self.prime_attn_len)
        return causal

    def _slot(self, position):
        """The cache slot that holds absolute `position` (int scalar tensor)."""
        if self.attn_kind in _RING_KINDS:
            return position % self.cache_len
        if self.attn_kind == COLUMN:  # column-major: each column's keys are contiguous
            return position % self.block_ctx * self.blocks + position // self.block_ctx
        return position

    def _slot_positions(self, end):
        """int32 [cache_len]: the position each slot holds once positions < end are written
        (only those in [0, end) are real)."""
        slots = tf.range(self.cache_len)
        if self.attn_kind in _RING_KINDS:
            return end - 1 - tf.math.floormod(end - 1 - slots, self.cache_len)
        if self.attn_kind == COLUMN:
            return slots % self.blocks * self.block_ctx + slots // self.blocks
        return slots

    def _write(self, cache, key, value, start, length):
        """The cache with the keys and values of positions [start, start + length) written:
        key, value [batch, >= max(length, 1), n_state] from position `start` on (rows past
        `length` are ignored). length: an int, or an int scalar tensor (then any length >= 0)."""
        if isinstance(length, int) and length == 1 and self.attn_kind != PRIME:
            slot = self._slot(start)

            def update(old, new):
                return write_slot(old, new, slot)
        else:
            # Each slot takes the chunk's latest position that maps to it, if any (a chunk
            # longer than a ring buffer overwrites slots; prime attention keeps only the prefix).
            positions = self._slot_positions(start + length)
            take = ((positions >= start) & (positions < start + length))[None, :, None]
            # Clipped so that the gather stays in range where nothing is taken (length 0 too).
            source = tf.clip_by_value(positions - start, 0, tf.maximum(length - 1, 0))

            def update(old, new):
                return tf.where(take, tf.cast(tf.gather(new, source, axis=1), old.dtype), old)
        return {"key": update(cache["key"], key), "value": update(cache["value"], value)}

    def _attend_cached(self, q, key, value, cache, position, training):
        """q [batch, L, heads, head_dim] at positions [position, position + L); key, value
        [batch, L, n_state] -> (attention output like q, new cache)."""
        run_kwargs = {"dropout": self.attn_drop, "training": training}
        if self.attn_kind == CROSS:
            keys, values = self._split_heads(cache["key"]), self._split_heads(cache["value"])
            return attend(q, keys, values, **run_kwargs), cache
        if position is None:
            raise ValueError("a cached call needs `position`, the first token's position")
        length = q.shape[1]
        if length is None:
            raise ValueError("a cached call needs a static chunk length")
        start = tf.cast(position, tf.int32)
        if length == 1 and self.attn_kind != PRIME and not (training and self.attn_drop):
            return self._attend_step(q, key, value, cache, start)
        q_pos = start + tf.range(length)
        old_key, old_value, old_pos = cache["key"], cache["value"], self._slot_positions(start)
        keys = self._split_heads(tf.concat([old_key, key], axis=1))
        values = self._split_heads(tf.concat([old_value, value], axis=1))
        k_pos = tf.concat([old_pos, q_pos], axis=0)
        written = tf.concat([(old_pos >= 0) & (old_pos < start), tf.ones([length], tf.bool)], 0)
        mask = written[None, :] & self._visible(q_pos[:, None], k_pos[None, :])
        out = attend(q, keys, values, mask, zero_empty=self.attn_kind == PREV_BLOCK,
                     **run_kwargs)
        return out, self._write(cache, key, value, start, length)

    def _attend_step(self, q, key, value, cache, start):
        """The one-token fast path: write the token's key and value into its slot, then read
        only the slots it can see as one static-shape window (no concatenation, no mask over
        the whole cache): row bc keys, previous block the other half of its ring, column the
        `blocks` contiguous keys of its column, dense the cache. q [batch, 1, heads, head_dim]
        at position `start` -> (output like q, new cache)."""
        new_cache = self._write(cache, key, value, start, 1)
        kind, bc = self.attn_kind, self.block_ctx
        keys, values = new_cache["key"], new_cache["value"]
        valid = None
        if kind == ROW:  # ring of one block: slots <= start % bc hold this block's positions
            valid = tf.range(bc) <= start % bc
        elif kind == PREV_BLOCK:  # ring of two blocks: read the half holding block b - 1
            begin = tf.stack([0, (start // bc + 1) % 2 * bc, 0])
            size = [-1, bc, self.n_state]
            keys, values = tf.slice(keys, begin, size), tf.slice(values, begin, size)
        elif kind == COLUMN:  # column-major cache: this column's keys, one per block
            begin = tf.stack([0, start % bc * self.blocks, 0])
            size = [-1, self.blocks, self.n_state]
            keys, values = tf.slice(keys, begin, size), tf.slice(values, begin, size)
            valid = tf.range(self.blocks) <= start // bc
        else:  # DENSE
            valid = tf.range(self.cache_len) <= start
        out = attend_one(q[:, 0], self._split_heads(keys), self._split_heads(values), valid)
        if kind == PREV_BLOCK:  # block 0 reads a zero block: zero output
            out *= tf.cast(start >= bc, out.dtype)
        return out[:, None], new_cache

    # -- public ------------------------------------------------------------------------------

    def init_cache(self, batch_size: int, dtype=None, encoder_kv=None) -> dict:
        """Empty cache {"key", "value"}: [batch_size, cache_len, n_state] each. Cross-attention
        needs encoder_kv [batch, encoder_dims, width] and caches its projected keys/values."""
        dtype = dtype or self.compute_dtype
        if not self.built:
            self.build((None, None, self.width))
        if self.attn_kind == CROSS:
            if encoder_kv is not None:
                encoder_kv = tf.cast(encoder_kv, self.compute_dtype)
            key, value = self._encoder_kv(encoder_kv)
            return {"key": tf.cast(key, dtype), "value": tf.cast(value, dtype)}
        zeros = tf.zeros([batch_size, self.cache_len, self.n_state], dtype)
        return {"key": zeros, "value": zeros}

    def attention_weights(self, x, encoder_kv=None) -> tf.Tensor:
        """The training forward's attention weights float32 [batch, heads, time, keys] for x
        [batch, time, width] (positions 0..), for the kinds whose keys are positions (dense,
        prime: the first prime_attn_len) or the encoder's (cross)."""
        kind = self.attn_kind
        if kind not in (DENSE, CROSS, PRIME):
            raise ValueError(f"attention kind {kind} reads its keys in blocks: its weights are "
                             f"not one [time, keys] matrix (dense, cross or prime kinds are)")
        h = self.c_attn(x)
        if kind == CROSS:
            key = self._encoder_kv(encoder_kv)[0]
            query = h
        else:
            query, key, _ = tf.split(h, 3, axis=-1)
        q = self._split_heads(query) * (1.0 / math.sqrt(self.head_dim))
        k = self._split_heads(key)
        if kind == PRIME:
            k = k[:, :self.prime_attn_len]
        mask = None if kind == CROSS else causal_mask(tf.shape(q)[1], tf.shape(k)[1])
        return attention_probs(q, k, mask)

    def call(self, x, encoder_kv=None, cache=None, position=None, prime_length=None,
             norm=None, training=None):
        """x [batch, time, width] -> y [batch, time, width]; with `norm` (a LayerNorm), the
        attention of norm(x) (folded into c_attn: Linear.call).

        With `cache` (from init_cache or a previous call), x holds the tokens at positions
        [position, position + time) (position: int scalar tensor) and (y, new_cache) is
        returned; cross-attention then reads the cache, not encoder_kv.

        With `cache` and `prime_length` (int scalar, tensor or not) instead of `position`, x
        holds positions [0, time) (a length the training forward takes: whole blocks for the
        blocked kinds) and y is the training forward's; new_cache is `cache` (empty: fresh
        from init_cache) with the keys and values of positions [0, prime_length) written. The
        positions from prime_length on may be padding: no position before them sees them.
        """
        if prime_length is not None and (cache is None or position is not None):
            raise ValueError("priming (prime_length) needs a cache and no position: it fills "
                             "positions [0, prime_length)")
        h = self.c_attn(x, norm=norm)
        if self.attn_kind == CROSS:
            query, key, value = h, None, None
        else:
            query, key, value = tf.split(h, 3, axis=-1)
        q = self._split_heads(query) * (1.0 / math.sqrt(self.head_dim))
        new_cache = cache
        if cache is None or prime_length is not None:
            if self.attn_kind == CROSS:
                # Priming reads the encoder keys the cache holds; it writes nothing.
                key, value = (self._encoder_kv(encoder_kv) if cache is None
                              else (cache["key"], cache["value"]))
            elif cache is not None:  # a tensor: `_write`'s one-slot path takes one key only
                new_cache = self._write(cache, key, value, 0,
                                        tf.convert_to_tensor(prime_length, tf.int32))
            out = self._attend_full(q, self._split_heads(key), self._split_heads(value),
                                    training)
        else:
            out, new_cache = self._attend_cached(q, key, value, cache, position, training)
        y = self.c_proj(tf.reshape(out, dims(out)[:2] + [self.n_state]))
        if self.resid_drop is not None:
            y = self.resid_drop(y, training=training)
        return y if cache is None else (y, new_cache)

    def get_config(self):
        return super().get_config() | {
            "width": self.width, "n_state": self.n_state, "heads": self.heads,
            "n_ctx": self.n_ctx, "attn_kind": self.attn_kind, "blocks": self.blocks,
            "encoder_dims": self.encoder_dims, "prime_len": self.prime_len,
            "init_scale": self.init_scale, "zero_out": self.zero_out,
            "attn_dropout": self.attn_dropout, "resid_dropout": self.resid_dropout}
