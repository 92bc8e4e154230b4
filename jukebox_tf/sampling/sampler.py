"""Sampling one window of a prior: prime the key/value cache, then draw tokens one at a time.

The whole window is one `tf.function` (optionally XLA-compiled): the prime fills the cache in
one blocked forward pass (`prior.prime`; a prior without it goes through `prior.step` in whole
chunks inside a `tf.while_loop`), and the per-token loop is a `tf.while_loop` (the rest of the
prime, then the new tokens) whose state is the fixed-shape cache and the token buffer, so no
Python runs per token. The samplers are kept per prior and settings, and prime length and
token count are tensors, so a whole windowed run traces (and compiles) once per batch size.

    tokens = sample_window(prior, cond, prime, n_new=512, temperature=0.99, seed=0)

`sample_window(..., naive=True)` (WindowSampler.sample_naive) draws the same tokens with a
full forward pass per token and no cache carried over: the reference for tests and for the
benchmark's scaling comparison.
"""

from __future__ import annotations

import dataclasses
import weakref

import numpy as np
import tensorflow as tf

from jukebox_tf.sampling import prior_api
from jukebox_tf.sampling.filters import pick, seed_key


@dataclasses.dataclass(frozen=True)
class SamplerSettings:
    temperature: float = 1.0  # 0 = greedy
    top_k: int = 0
    top_p: float = 0.0
    chunk_size: int = 32  # prime positions per step call (priors without a one-pass prime)
    jit_compile: bool = False

    def __post_init__(self):
        if self.temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {self.temperature}")
        if self.top_k < 0 or not 0.0 <= self.top_p <= 1.0:
            raise ValueError(f"top_k must be >= 0 and top_p in [0, 1], got {self.top_k}, "
                             f"{self.top_p}")
        if self.chunk_size < 1:
            raise ValueError(f"chunk_size must be positive, got {self.chunk_size}")


def _shifted(tokens):
    """int32 [B, T] -> [B, T]: the step inputs for positions 0..T-1 (a dummy at position 0,
    where the prior uses its start token)."""
    return tf.concat([tf.zeros_like(tokens[:, :1]), tokens[:, :-1]], axis=1)


def _write_column(tokens, position, token):
    """tokens int32 [B, T] with token int32 [B] written at column `position`: in place under
    XLA (a dynamic-update-slice; XLA's scatter would copy the buffer every step)."""
    from jukebox_tf.layers.attention import write_slot

    return write_slot(tokens[..., None], token[:, None, None], position)[..., 0]


def step_over(step, cond, inputs, cache, start, stop, size: int):
    """Feeds step inputs [start, stop) of inputs int32 [B, n_ctx] to `step` (a prior's step or
    a tf.function of it) in chunks of the static `size` (stop - start a multiple of it);
    returns the cache. B may be unknown (the exported graph sampler's batch)."""
    rows = inputs.shape[0] if inputs.shape[0] is not None else -1

    def body(position, cache):
        piece = tf.slice(inputs, tf.stack([0, position]), [rows, size])
        _, cache = step(piece, position, cache, cond)
        return position + size, cache

    return tf.while_loop(lambda position, _: position < stop, body, (start, cache))[1]


def prime_in_chunks(step, cond, inputs, cache, length, chunk_size: int):
    """(The cache with step inputs [0, whole) fed in chunks of min(chunk_size, n_ctx), whole):
    whole = the largest multiple of the chunk <= length, so every step has a static shape."""
    chunk = min(chunk_size, inputs.shape[1])
    whole = length // chunk * chunk
    return step_over(step, cond, inputs, cache, tf.constant(0), whole, chunk), whole


class WindowSampler:
    """Compiled window sampling for one prior and one SamplerSettings.

    The cached graph takes the window as a fixed [B, n_ctx] buffer with the prime length and
    the number of new tokens as tensors, so every window of a level (first, middle, last, any
    prime length) runs the same graph: one trace (and one XLA compilation) per batch size.
    """

    def __init__(self, prior, settings: SamplerSettings = SamplerSettings()):
        self.prior, self.settings = prior, settings
        jit = settings.jit_compile
        self._cached = tf.function(self._generate, jit_compile=jit, autograph=False)
        self._naive = tf.function(self._generate_naive, jit_compile=jit, autograph=False)

    def _pick(self, logits, key, position):
        s = self.settings
        return pick(logits, key, position, s.temperature, s.top_k, s.top_p, s.jit_compile)

    def _prime(self, cond, inputs, cache, length):
        """(The cache with step inputs [0, length) of inputs int32 [B, n_ctx] fed, or those of
        whole chunks of them; the first position still to step.)"""
        prime = prior_api.one_pass_prime(self.prior)
        if prime is not None:
            return prime(inputs, length, cache, cond), length
        # Whole chunks; the rest of the prime then goes through the per-token loop, whose copy
        # of the model the graph has anyway (tracing and XLA compilation stay short), with
        # static step shapes for any prime length.
        return prime_in_chunks(self.prior.step, cond, inputs, cache, length,
                               self.settings.chunk_size)

    def _generate(self, cond, tokens, length, n_new, key):
        """tokens int32 [B, n_ctx]: the prime in [0, length), then anything -> the buffer with
        n_new sampled tokens written at [length, length + n_new)."""
        prior = self.prior
        tokens = prior_api.to_tokens(prior, tokens)
        cache = prior.init_cache(tokens.shape[0], cond)
        # The per-token loop goes on from `start` <= length: it always feeds the prime's last
        # token (at position `length`, whose logits draw the first new token).
        cache, start = self._prime(cond, _shifted(tokens), cache, length)

        def body(position, cache, tokens):
            last = tf.gather(tokens, tf.maximum(position - 1, 0), axis=1)  # unused at 0
            logits, cache = self.prior.step(last[:, None], position, cache, cond)
            token = self._pick(logits[:, 0], key, position)
            # Inside the prime the prime's own token stays.
            token = tf.where(position < length, tf.gather(tokens, position, axis=1), token)
            return position + 1, cache, _write_column(tokens, position, token)

        stop = length + n_new
        return prior_api.to_codes(prior, tf.while_loop(
            lambda position, *_: position < stop, body, (start, cache, tokens))[2])

    def _generate_naive(self, cond, prime, key, n_new: int):
        batch, length = prime.shape
        tokens = prior_api.to_tokens(
            self.prior, tf.concat([prime, tf.zeros([batch, n_new], tf.int32)], axis=1))

        def body(t, tokens):
            # Everything recomputed from scratch: one uncached forward pass over the prime and
            # all new positions (causal: the not-yet-sampled tail does not matter).
            position = length + t
            logits = prior_api.forward_logits(self.prior, _shifted(tokens), cond)
            token = self._pick(tf.gather(logits, position, axis=1), key, position)
            return t + 1, _write_column(tokens, position, token)

        _, tokens = tf.while_loop(lambda t, _: t < n_new, body, (tf.constant(0), tokens))
        return prior_api.to_codes(self.prior, tokens[:, length:])

    def _checked(self, prime, n_new):
        prime = np.asarray(prime, np.int32)
        if prime.ndim != 2:
            raise ValueError(f"prime must be int [batch, length], got shape {prime.shape}")
        ctx = prior_api.n_ctx(self.prior)
        if n_new < 0 or prime.shape[1] + n_new > ctx:
            raise ValueError(f"a window holds at most n_ctx={ctx} tokens: prime "
                             f"{prime.shape[1]} + new {n_new}")
        return prime, ctx

    def sample(self, cond, prime, n_new: int, seed=0) -> np.ndarray:
        """cond from prior.conditioning, prime int [B, P] (P may be 0), n_new new tokens ->
        int32 [B, n_new], the tokens at positions P..P + n_new - 1. seed: int or int [2] key."""
        prime, ctx = self._checked(prime, n_new)
        batch, length = prime.shape
        if n_new == 0:
            return np.zeros([batch, 0], np.int32)
        buffer = np.zeros([batch, ctx], np.int32)
        buffer[:, :length] = prime
        out = self._cached(cond, tf.constant(buffer), tf.constant(length), tf.constant(n_new),
                           seed_key(seed))
        return out.numpy()[:, length:length + n_new]

    def sample_naive(self, cond, prime, n_new: int, seed=0) -> np.ndarray:
        """`sample` by a full forward pass per token over the prime and the new tokens (no
        cache carried between tokens); traced per (prime length, n_new)."""
        prime, _ = self._checked(prime, n_new)
        if n_new == 0:
            return np.zeros([prime.shape[0], 0], np.int32)
        return self._naive(cond, tf.constant(prime), seed_key(seed), int(n_new)).numpy()


# One WindowSampler per (prior, settings), so repeated windows reuse the traced graphs; weak
# keys let a prior (and its graphs) be freed.
_SAMPLERS: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def get_sampler(prior, settings: SamplerSettings) -> WindowSampler:
    per_prior = _SAMPLERS.setdefault(prior, {})
    if settings not in per_prior:
        per_prior[settings] = WindowSampler(prior, settings)
    return per_prior[settings]


def sample_window(prior, cond, prime, n_new: int, *, seed=0, temperature: float = 1.0,
                  top_k: int = 0, top_p: float = 0.0, chunk_size: int = 32,
                  jit_compile: bool = False, naive: bool = False) -> np.ndarray:
    """New tokens int32 [B, n_new] after prime int [B, P]; see WindowSampler.sample."""
    sampler = get_sampler(prior, SamplerSettings(temperature, top_k, top_p, chunk_size,
                                                 jit_compile))
    run = sampler.sample_naive if naive else sampler.sample
    return run(cond, prime, n_new, seed)
