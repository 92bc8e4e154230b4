"""Windowed sampling of a level entirely in graph, for the exported `sample`, `upsample` and
`generate` signatures: the loop over windows and the token loop inside each are
`tf.while_loop`s, and temperature, top-k, top-p, seed, lengths and batch size are tensors.

It draws the same tokens as the library (sampling/windowed.py `sample_level` driving
sampler.py's cached window loop, uncompiled) for the same inputs: the same priming (one
blocked forward pass, `prior.prime`), the same Gumbel noise keys per row
(`row_keys(seeds, level, window start)`, folded with the position) and the same logit filters
(filters.py), here with one setting per row:

    codes = sample_level_graph(prior, level, total_tokens, hop_lengths, labels, settings,
                               lyric_tokens=..., lyric_lengths=..., upper_codes=..., prime=...)
"""

from __future__ import annotations

import dataclasses
from typing import Sequence

import tensorflow as tf

from jukebox_tf.prior.labels import LENGTH, OFFSET, TOTAL_LENGTH
from jukebox_tf.prior.lyrics import lyric_window_tf
from jukebox_tf.sampling import noise, prior_api
from jukebox_tf.sampling.filters import FILTERED, argmax, draw
from jukebox_tf.sampling.sampler import prime_in_chunks, step_over


@dataclasses.dataclass
class GraphSettings:
    """The sampling settings of each row, as tensors [B]: rows merged into one batch (by a
    server's batcher) each keep their own."""

    temperature: tf.Tensor  # float32; 0 = greedy
    top_k: tf.Tensor  # int32; 0 = off
    top_p: tf.Tensor  # float32; 0 = off
    seed: tf.Tensor  # int64

    def take(self, rows) -> "GraphSettings":
        """The settings of rows int32 [b]."""
        return GraphSettings(*(tf.gather(getattr(self, field.name), rows)
                               for field in dataclasses.fields(self)))


def row_keys_graph(seeds, *salts) -> tf.Tensor:
    """filters.row_keys in graph: int64 [B, 2], the key of each row's int64 seed with each int
    salt folded in."""
    seeds = tf.cast(seeds, tf.int64)
    keys = tf.stack([seeds, tf.zeros_like(seeds)], axis=-1)
    for salt in salts:
        keys = noise.fold_in(keys, salt)
    return keys


def filter_logits_graph(logits, top_k, top_p) -> tf.Tensor:
    """filters.filter_logits row by row: logits [B, V], top_k int32 [B] (0 = off), top_p
    float32 [B] (0 = off). Each filter runs only when some row asks for it."""
    vocab = logits.shape[-1]
    filtered = tf.cast(FILTERED, logits.dtype)

    def keep_top_k(x):
        ranked = tf.sort(x, axis=-1, direction="DESCENDING")
        kth = tf.gather(ranked, tf.clip_by_value(top_k, 1, vocab) - 1, batch_dims=1)
        on = (top_k > 0) & (top_k < vocab)
        return tf.where(on[:, None] & (x < kth[:, None]), filtered, x)

    def keep_top_p(x):
        ranked = tf.sort(x, axis=-1, direction="DESCENDING")
        probs = tf.nn.softmax(tf.cast(ranked, tf.float32), axis=-1)
        above = tf.cumsum(probs, axis=-1, exclusive=True)
        n_keep = tf.reduce_sum(tf.cast(above <= top_p[:, None], tf.int32), axis=-1)
        threshold = tf.gather(ranked, tf.maximum(n_keep, 1) - 1, batch_dims=1)
        return tf.where((top_p > 0.0)[:, None] & (x < threshold[:, None]), filtered, x)

    logits = tf.cond(tf.reduce_any((top_k > 0) & (top_k < vocab)),
                     lambda: keep_top_k(logits), lambda: tf.identity(logits))
    return tf.cond(tf.reduce_any(top_p > 0.0), lambda: keep_top_p(logits),
                   lambda: tf.identity(logits))


def pick_graph(logits, keys, position, settings: GraphSettings, xla: bool = False) -> tf.Tensor:
    """filters.pick row by row: logits float32 [B, V], keys int64 [B, 2] -> int32 [B]. xla: the
    code runs under XLA (filters.argmax)."""
    temperature = settings.temperature

    def sampled():
        x = tf.cast(logits, tf.float32)
        # As process_logits: divided only when the temperature is not 1 (x / 1 == x anyway).
        x = x / tf.where(temperature > 0.0, temperature, 1.0)[:, None]
        drawn = draw(filter_logits_graph(x, settings.top_k, settings.top_p), keys, position,
                     xla)
        return tf.where(temperature > 0.0, drawn, argmax(logits, xla))

    return tf.cond(tf.reduce_any(temperature > 0.0), sampled, lambda: argmax(logits, xla))


def _shifted(tokens):
    return tf.concat([tf.zeros_like(tokens[:, :1]), tokens[:, :-1]], axis=1)


def sample_window_graph(prior, cond, tokens, length, n_new, key, settings: GraphSettings,
                        chunk_size: int = 32, step=None, xla: bool = False) -> tf.Tensor:
    """sampler.WindowSampler._generate with tensor settings and batch size: tokens int32
    [B, n_ctx] with the prime in [0, length) -> the buffer with n_new tokens sampled at
    [length, length + n_new). step: prior.step or a tf.function of it (one trace per step
    length, shared by every loop that calls it). xla: the code runs under XLA."""
    step = step or prior.step
    tokens = prior_api.to_tokens(prior, tokens)
    batch = tf.shape(tokens)[0]
    cache = prior.init_cache(batch, cond)
    inputs = _shifted(tokens)

    prime = prior_api.one_pass_prime(prior)
    if prime is not None:
        cache = prime(inputs, length, cache, cond)
    else:
        cache, whole = prime_in_chunks(step, cond, inputs, cache, length, chunk_size)
        cache = step_over(step, cond, inputs, cache, whole, length, 1)
    last = tf.gather(tokens, tf.maximum(length - 1, 0), axis=1)
    rows = tf.range(batch)

    def body(position, last, cache, tokens):
        logits, cache = step(last[:, None], position, cache, cond)
        token = pick_graph(logits[:, 0], key, position, settings, xla)
        index = tf.stack([rows, tf.fill([batch], position)], axis=1)
        return position + 1, token, cache, tf.tensor_scatter_nd_update(tokens, index, token)

    stop = length + n_new
    return prior_api.to_codes(prior, tf.while_loop(
        lambda position, *_: position < stop, body, (length, last, cache, tokens))[3])


def compiled_window(prior, chunk_size: int = 32):
    """sample_window_graph as one XLA cluster per call (compiled per batch size when it runs):
    the per-token loop's operations fused, as the library's `--xla` path. A SavedModel
    that holds it runs on TF Serving only with XLA enabled (export/README.md)."""

    def window(cond, tokens, length, n_new, key, temperature, top_k, top_p, seed):
        return sample_window_graph(prior, cond, tokens, length, n_new, key, GraphSettings(
            temperature, top_k, top_p, seed), chunk_size, xla=True)

    compiled = tf.function(window, jit_compile=True, autograph=False)

    def call(cond, tokens, length, n_new, key, settings: GraphSettings):
        return compiled(cond, tokens, length, n_new, key, *(
            getattr(settings, field.name) for field in dataclasses.fields(settings)))

    return call


class LevelWindows:
    """The windows of a level in graph, placed as windowed.level_windows places them: n_ctx
    tokens every `hop`, the last one ending at the level's end (one window when the level fits
    in n_ctx). total_tokens: int32 scalar tensor. ratio: the hop ratio to the level above, for
    upsamplers (their windows read ctx / ratio codes of it)."""

    def __init__(self, total_tokens, ctx: int, hop: int, ratio: int | None = None):
        self.total, self.ctx, self.hop, self.ratio = total_tokens, ctx, hop, ratio
        self.fits = total_tokens <= ctx
        self.count = tf.where(self.fits, 1, (total_tokens - ctx + 2 * hop - 1) // hop)

    @classmethod
    def of(cls, prior, level: int, total_tokens, hop_lengths: Sequence[int],
           hop_fraction: float, upsampler: bool) -> "LevelWindows":
        ctx = prior_api.n_ctx(prior)
        hop = int(hop_fraction * ctx)
        if not 0 < hop <= ctx:
            raise ValueError(f"hop_fraction {hop_fraction} gives a hop of {hop} tokens for "
                             f"n_ctx={ctx}: need 0 < hop <= n_ctx")
        ratio = None
        if upsampler:
            ratio = int(hop_lengths[level + 1]) // int(hop_lengths[level])
            if hop % ratio or ctx % ratio:
                raise ValueError(f"level {level}: the window hop {hop} and n_ctx {ctx} must be "
                                 f"multiples of the hop ratio {ratio} to the level above")
        return cls(tf.cast(total_tokens, tf.int32), ctx, hop, ratio)

    def start(self, w):
        return tf.where(self.fits, 0, tf.minimum(w * self.hop, self.total - self.ctx))

    def end(self, w):
        return tf.minimum(self.start(w) + self.ctx, self.total)

    def after(self, length):
        """The first window that ends past `length` codes (count: none, the level is done)."""
        w = tf.where(length < self.ctx, 0, (length - self.ctx) // self.hop + 1)
        return tf.where(length >= self.total, self.count, tf.minimum(w, self.count - 1))

    def upper_end(self, w):
        """How many codes of the level above window w reads, from the start."""
        ratio = self.ratio
        return tf.minimum(self.start(w) // ratio + self.ctx // ratio, self.total // ratio)


def sample_level_graph(prior, level: int, total_tokens, hop_lengths: Sequence[int], labels,
                       settings: GraphSettings, *, hop_fraction: float, lyric_tokens=None,
                       lyric_lengths=None, upper_codes=None, prime=None, stop_tokens=None,
                       chunk_size: int = 32, step=None, compiled=None) -> tf.Tensor:
    """windowed.sample_level in graph: codes int32 [B, total_tokens] of `level`.

    stop_tokens (int32 scalar): stop after the first window that brings the level to at least
    this many tokens; the codes then end at that window's end. The windows are those of the
    whole level (total_tokens), and a prime ending at a window's end resumes exactly there, so
    calls that each feed the last one's codes back as the prime draw, joined, the codes of one
    call: a level made part by part (the served chain, window by window). An upsampler also
    stops before a window whose span of upper_codes is not all there (the level above being
    made part by part too): LevelWindows.upper_end says how far it must be.

    labels int32 [B, 4 + G]: base rows (total length and the track offset; each window sets
    its own offset and length). lyric_tokens int32 [B, L] / lyric_lengths int32 [B]: the whole
    lyrics, for priors with lyrics. upper_codes int32 [B, T_above]: the level above, for
    upsamplers. prime int32 [B, P] (P may be 0): codes kept as they are. step: see
    sample_window_graph. compiled: `compiled_window(prior)` to sample each window under XLA.
    """
    windows = LevelWindows.of(prior, level, total_tokens, hop_lengths, hop_fraction,
                              upsampler=upper_codes is not None)
    ctx, ratio, total_tokens = windows.ctx, windows.ratio, windows.total
    hop_length = int(hop_lengths[level])
    n_lyric = prior_api.n_lyric_tokens(prior)
    batch = tf.shape(labels)[0]
    codes = (tf.zeros([batch, 0], tf.int32) if prime is None
             else tf.cast(prime, tf.int32))

    def window(start, codes):
        current = tf.shape(codes)[1]
        end = tf.minimum(start + ctx, total_tokens)
        prime_len, n_new = current - start, end - current
        buffer = tf.pad(codes[:, start:], [[0, 0], [0, ctx - prime_len]])
        buffer = tf.ensure_shape(buffer, [None, ctx])
        columns = tf.range(labels.shape[1])[None]
        y = tf.where(columns == OFFSET, labels + start * hop_length, labels)
        y = tf.where(columns == LENGTH, ctx * hop_length, y)
        inputs = {"labels": y}
        if n_lyric:
            inputs["lyrics"] = lyric_window_tf(lyric_tokens, y[:, TOTAL_LENGTH], y[:, OFFSET],
                                               y[:, LENGTH], n_lyric, lengths=lyric_lengths)[0]
        if ratio is not None:
            width = ctx // ratio
            part = upper_codes[:, start // ratio:start // ratio + width]
            part = tf.pad(part, [[0, 0], [0, width - tf.shape(part)[1]]])
            inputs["upper_codes"] = tf.ensure_shape(part, [None, width])
        cond = prior.conditioning(inputs, training=False)
        key = row_keys_graph(settings.seed, level, start)
        if compiled is not None:
            out = compiled(cond, buffer, prime_len, n_new, key, settings)
        else:
            out = sample_window_graph(prior, cond, buffer, prime_len, n_new, key, settings,
                                      chunk_size, step)
        return tf.concat([codes, out[:, prime_len:prime_len + n_new]], axis=1)

    def body(w, codes):
        codes = tf.cond(windows.end(w) > tf.shape(codes)[1],
                        lambda: window(windows.start(w), codes), lambda: tf.identity(codes))
        return w + 1, codes

    stop = total_tokens if stop_tokens is None else tf.cast(stop_tokens, tf.int32)

    def more(w, codes):
        go = (w < windows.count) & (tf.shape(codes)[1] < stop)
        if ratio is None:
            return go
        # A window that samples needs its whole span of the level above.
        return go & ((windows.end(w) <= tf.shape(codes)[1])
                     | (windows.upper_end(w) <= tf.shape(upper_codes)[1]))

    _, codes = tf.while_loop(more, body, (tf.constant(0), codes),
                             shape_invariants=(tf.TensorShape([]), tf.TensorShape([None, None])))
    return codes
