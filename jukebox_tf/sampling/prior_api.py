"""What sampling needs from a prior, in one place.

A prior (TopLevelPrior, Upsampler, or a test stand-in) offers:

- `config`: a PriorConfig with `n_ctx` (music tokens per window), `l_bins`, and `level`.
- `conditioning(inputs, training=False) -> cond`: inputs may hold "labels" int32 [B, 4 + G]
  (jukebox_tf.prior.labels layout, in audio samples), "lyrics" int32 [B, n_lyric_tokens]
  (already windowed) and, for upsamplers, "upper_codes" int32 [B, n_ctx // hop_ratio] (codes of
  the level above covering the window). cond is opaque to the sampler.
- `init_cache(batch_size, cond) -> cache`: a nest of tensors with static shapes.
- `step(prev_tokens int32 [B, L], position, cache, cond) -> (logits float32 [B, L, l_bins],
  cache)`: prev_tokens[:, i] is the code at position + i - 1 (ignored at position 0, where the
  start token is used); logits[:, i] is the distribution of the code at position + i.
- optional `prime(prev_tokens int32 [B, T], length, cache, cond) -> cache`: the fresh cache
  with positions [0, length) of `step`'s inputs written, as `step` over them would leave it
  (the sampler's one-pass priming; without it the sampler steps over the prime in chunks).
- optional `forward_logits(prev_tokens int32 [B, T], cond) -> logits float32 [B, T, l_bins]`:
  positions [0, T) by one uncached forward pass (the naive sampler's reference; without it
  the naive sampler runs `step` over all T positions from a fresh cache).
- optional `to_tokens(codes) -> tokens` and `to_codes(tokens) -> codes`, for a prior whose
  step reads and scores tokens of a vocabulary larger than its codes (the 1B lyrics model's
  characters then codes): the sampler works on tokens and returns codes. With them, an
  `always_prime` attribute says `prime` must run even for an empty prime (it writes a prefix).

The optional facts below are read through these accessors, so a prior that names them
differently needs a change here only.
"""

from __future__ import annotations

from typing import Any, Protocol

from jukebox_tf.codes.hierarchy import PriorFacts


class SamplingPrior(Protocol):
    config: Any

    def conditioning(self, inputs: dict, training: bool = False) -> Any: ...

    def init_cache(self, batch_size: int, cond: Any) -> Any: ...

    def step(self, prev_tokens, position, cache, cond) -> tuple: ...


def _first(prior, names, default=None):
    for owner in (prior, getattr(prior, "config", None)):
        for name in names:
            value = getattr(owner, name, None)
            if value is not None:
                return value
    return default


def prior_level(prior) -> int:
    """The VQ-VAE level the prior models (the top level has no `upper_codes`)."""
    level = _first(prior, ("level",))
    if level is None:
        raise ValueError("the prior does not say its level (config.level)")
    return int(level)


def n_ctx(prior) -> int:
    """Music tokens per window."""
    return int(_first(prior, ("n_music_ctx",), prior.config.n_ctx))


def n_lyric_tokens(prior) -> int:
    """Lyric tokens a window sees; 0 for priors without lyrics (config.lyrics off)."""
    if getattr(prior.config, "lyrics", True) is False:
        return 0
    return int(_first(prior, ("n_lyric_tokens",), 0))


def max_genre_words(prior) -> int | None:
    """Genre slots of the label rows, or None when the prior does not say (labels are then
    not passed). Priors with label conditioning off ignore the labels they are given."""
    value = _first(prior, ("max_genre_words",))
    return None if value is None else int(value)


def hop_ratio(prior) -> int | None:
    """An upsampler's tokens per token of the level above, when its config says."""
    value = _first(prior, ("hop_ratio",))
    return None if value is None else int(value)


def timing_sample_rate(prior) -> int | None:
    """The audio rate the prior's timing embeddings count samples at, when it has them (the
    labels sampling builds count samples of the VQ-VAE's rate: the two must agree)."""
    if not getattr(prior.config, "has_timing", False):
        return None
    rate = getattr(prior.config, "sample_rate", None)
    return None if rate is None else int(rate)


def lyric_vocab_size(prior) -> int:
    """The ids of the prior's character vocabulary with padding (lyrics.tokenizer_for)."""
    return int(_first(prior, ("n_vocab",), 80))


def to_tokens(prior, codes):
    """Codes -> the tokens the prior's step reads (the codes themselves for most priors)."""
    convert = getattr(prior, "to_tokens", None)
    return codes if convert is None else convert(codes)


def to_codes(prior, tokens):
    """The tokens the prior's step scores -> codes."""
    convert = getattr(prior, "to_codes", None)
    return tokens if convert is None else convert(tokens)


def one_pass_prime(prior):
    """The prior's `prime(prev_tokens, length, cache, cond) -> cache` in graph, skipped for an
    empty prime (an unprimed first window: under XLA the pass covers the whole window whatever
    the prime's length) unless the prior is `always_prime`; None when it has no `prime`."""
    prime = getattr(prior, "prime", None)
    if prime is None:
        return None
    if getattr(prior, "always_prime", False):
        return prime
    import tensorflow as tf

    def prime_nonempty(prev_tokens, length, cache, cond):
        return tf.cond(length > 0, lambda: prime(prev_tokens, length, cache, cond),
                       lambda: cache)

    return prime_nonempty


def forward_logits(prior, prev_tokens, cond):
    """Logits float32 [B, T, l_bins] of positions [0, T) without carrying a cache: the prior's
    `forward_logits` when it has one, else `step` over all T positions from a fresh cache."""
    forward = getattr(prior, "forward_logits", None)
    if forward is not None:
        return forward(prev_tokens, cond)
    import tensorflow as tf

    cache = prior.init_cache(prev_tokens.shape[0], cond)
    return prior.step(prev_tokens, tf.constant(0), cache, cond)[0]


def facts(prior) -> PriorFacts:
    """What the prior says of its VQ-VAE, for CodeHierarchy.check."""
    return PriorFacts(level=prior_level(prior), l_bins=_first(prior, ("l_bins",)),
                      sample_rate=timing_sample_rate(prior), hop_ratio=hop_ratio(prior))


def n_params(prior) -> int:
    """The prior's number of weights (its variables' elements)."""
    return sum(variable.shape.num_elements() for variable in getattr(prior, "variables", ()))
