"""Sampling a whole level of any length, window by window, as the original's `sample_level`.

Windows of n_ctx tokens start every hop = hop_fraction * n_ctx tokens (`get_starts`; the last
one is moved back to end exactly at the requested length). In each window the tokens already
sampled are the prime and only the new ones are kept, so the output is the prime followed by
exactly the missing tokens. Each window gets its own conditioning, as the original's get_y and
get_z_conds: the labels' offset (window start x hop length, in audio samples) and length
(n_ctx x hop length), the lyric tokens aligned with that span, and for upsamplers the codes of
the level above covering the window.

    codes = sample_level(prior, total_tokens=2048, hop_lengths=vqvae.hop_lengths,
                         labels=labels, hop_fraction=0.125, temperature=0.99)
    lower = upsample(upsampler, upper_codes, hop_lengths=vqvae.hop_lengths, labels=labels)
"""

from __future__ import annotations

import time
from typing import Sequence

import numpy as np
import tensorflow as tf
from tqdm import tqdm

from jukebox_tf.codes.hierarchy import CodeHierarchy, PriorFacts
from jukebox_tf.prior.labels import LENGTH, OFFSET, TOTAL_LENGTH
from jukebox_tf.prior.lyrics import lyric_window_tf
from jukebox_tf.sampling import prior_api
from jukebox_tf.sampling.filters import row_keys, row_seeds
from jukebox_tf.sampling.sampler import SamplerSettings, get_sampler

# The original's per-level hop fractions (index = level): the top level moves on by an eighth
# of its context, so each of its windows sees 7/8 of a context of music already made.
HOP_FRACTIONS = (0.5, 0.5, 0.125)


def get_starts(total_length: int, n_ctx: int, hop_length: int) -> list[int]:
    """Window starts covering [0, total_length) with n_ctx windows every hop_length tokens;
    the last start is total_length - n_ctx, so no window runs past the end (the original's)."""
    return [min(start, total_length - n_ctx)
            for start in range(0, total_length - n_ctx + hop_length, hop_length)]


def window_starts(total_tokens: int, n_ctx: int, hop_fraction: float) -> list[int]:
    """Starts of the windows that sample a level of total_tokens: one window at 0 when it fits
    in a context (the original's partial window), else `get_starts`."""
    if total_tokens <= n_ctx:
        return [0]
    hop = int(hop_fraction * n_ctx)
    if not 0 < hop <= n_ctx:
        raise ValueError(f"hop_fraction {hop_fraction} gives a hop of {hop} tokens for "
                         f"n_ctx={n_ctx}: need 0 < hop <= n_ctx")
    return get_starts(total_tokens, n_ctx, hop)


def window_inputs(prior, start: int, hop_length: int, labels, lyrics, upper_codes,
                   upper_ratio: int | None) -> dict:
    """The conditioning inputs of the window starting at token `start`."""
    ctx = prior_api.n_ctx(prior)
    inputs = {}
    offset = duration = None
    if labels is not None:
        y = np.array(labels, np.int32, copy=True)
        y[:, OFFSET] += start * hop_length
        y[:, LENGTH] = ctx * hop_length
        offset, duration = y[:, OFFSET], y[:, LENGTH]
        inputs["labels"] = tf.constant(y)
    n_lyric = prior_api.n_lyric_tokens(prior)
    if n_lyric:
        if labels is None:
            raise ValueError("a lyrics prior needs labels (their track length and offset place "
                             "the lyric window)")
        # No lyrics: an all-padding window.
        tokens, lengths = lyrics if lyrics is not None else (np.zeros([len(y), 1], np.int32),
                                                             np.zeros([len(y)], np.int32))
        inputs["lyrics"] = lyric_window_tf(tokens, y[:, TOTAL_LENGTH], offset, duration,
                                           n_lyric, lengths=lengths)[0]
    if upper_ratio is not None:
        if start % upper_ratio:
            raise ValueError(f"window start {start} is not a multiple of the hop ratio "
                             f"{upper_ratio} to the level above: choose a hop_fraction whose "
                             f"hop is a multiple of it")
        width = ctx // upper_ratio
        window = np.asarray(upper_codes)[:, start // upper_ratio:start // upper_ratio + width]
        # A level shorter than one context: the conditioner still wants a full window; the
        # zero codes past the end only reach the positions near it through its convolutions.
        window = np.pad(window, [(0, 0), (0, width - window.shape[1])])
        inputs["upper_codes"] = tf.constant(window, tf.int32)
    return inputs


def sample_level(prior, total_tokens: int, hop_lengths: Sequence[int], **kwargs) -> np.ndarray:
    """Codes int32 [B, total_tokens] of one level; arguments as `level_windows`."""
    codes = None
    for codes in level_windows(prior, total_tokens, hop_lengths, **kwargs):
        pass
    return codes


def level_windows(prior, total_tokens: int, hop_lengths: Sequence[int], *, labels=None,
                  lyrics=None, upper_codes=None, prime=None, n_samples: int | None = None,
                  hop_fraction: float | None = None, temperature: float = 1.0, top_k: int = 0,
                  top_p: float = 0.0, chunk_size: int = 32, seed=0,
                  jit_compile: bool = False, level: int | None = None, progress: bool = True,
                  timings: list | None = None, upper_ready=None):
    """Yields a level's codes int32 [B, T] as they grow, once before the first window (the
    prime, maybe empty) and after each window, the last time [B, total_tokens].

    hop_lengths: the VQ-VAE's audio samples per code, per level. labels: int [B, 4 + G] base
    rows (total length and the track's offset; offset and length are set per window). lyrics:
    (tokens int [B, L], lengths int [B]) of the whole track, or None. upper_codes: int
    [B, T_above], all codes of the level above (upsamplers). prime: int [B, P] codes to
    continue (kept as they are). B comes from n_samples or from any of these. hop_fraction
    defaults to the original's for the level; temperature 0 samples greedily. seed: an int
    (sample i gets seed + i) or one int per sample; a sample depends only on its own seed.
    upper_ready(n): called before a window reads upper_codes[:, :n], for an upper level that
    is filled in as it is sampled (streaming); the codes are those of a filled array.
    """
    level = prior_api.prior_level(prior) if level is None else level
    hop_length = int(hop_lengths[level])
    ctx = prior_api.n_ctx(prior)
    hop_fraction = HOP_FRACTIONS[min(level, 2)] if hop_fraction is None else hop_fraction
    upper_ratio = None
    if upper_codes is not None or level + 1 < len(hop_lengths):
        if upper_codes is None:
            raise ValueError(f"level {level} is below the top: it needs upper_codes, the codes "
                             f"of level {level + 1}")
        hierarchy = CodeHierarchy(None, hop_lengths, None)
        hierarchy.check(PriorFacts(level=level, hop_ratio=prior_api.hop_ratio(prior)),
                        "sample_level")
        upper_ratio = hierarchy.hop_ratio(level)
        if np.shape(upper_codes)[1] * upper_ratio < total_tokens:
            raise ValueError(f"upper_codes cover {np.shape(upper_codes)[1] * upper_ratio} "
                             f"tokens of level {level}, fewer than the {total_tokens} asked for")
    batch = n_samples
    for value in (prime, labels, upper_codes, None if lyrics is None else lyrics[0]):
        if value is not None:
            batch = batch or len(value)
            if len(value) != batch:
                raise ValueError(f"inputs disagree on the number of samples: {len(value)} vs "
                                 f"{batch}")
    if batch is None:
        raise ValueError("give n_samples (or a prime, labels or upper_codes to take it from)")
    codes = np.zeros([batch, 0], np.int32) if prime is None else np.asarray(prime, np.int32)
    if codes.shape[1] > total_tokens:
        raise ValueError(f"the prime has {codes.shape[1]} tokens, more than the {total_tokens} "
                         f"asked for")
    seeds = row_seeds(seed, batch)
    sampler = get_sampler(prior, SamplerSettings(temperature, top_k, top_p, chunk_size,
                                                 jit_compile))
    starts = window_starts(total_tokens, ctx, hop_fraction)
    yield codes
    for start in tqdm(starts, desc=f"level {level}", unit="window", disable=not progress,
                      dynamic_ncols=True):
        end = min(start + ctx, total_tokens)
        if end <= codes.shape[1]:
            continue  # all in the prime already
        if upper_ready is not None:  # before the clock: the level above's windows are its own
            upper_ready(min((start + ctx) // upper_ratio, np.shape(upper_codes)[1]))
        began = time.perf_counter()
        inputs = window_inputs(prior, start, hop_length, labels, lyrics, upper_codes,
                                upper_ratio)
        cond = prior.conditioning(inputs, training=False)
        new = sampler.sample(cond, codes[:, start:], end - codes.shape[1],
                             seed=row_keys(seeds, level, start))
        codes = np.concatenate([codes, new], axis=1)
        if timings is not None:
            timings.append(time.perf_counter() - began)
        yield codes


def upsample(prior, upper_codes, hop_lengths: Sequence[int], **kwargs) -> np.ndarray:
    """Codes int32 [B, T_above * hop ratio] of the prior's level, given all codes int
    [B, T_above] of the level above; kwargs as `sample_level` (e.g. prime to continue)."""
    level = kwargs.get("level")
    level = prior_api.prior_level(prior) if level is None else level
    ratio = int(hop_lengths[level + 1]) // int(hop_lengths[level])
    total = np.shape(upper_codes)[1] * ratio
    return sample_level(prior, total, hop_lengths, upper_codes=upper_codes, **kwargs)
