"""The four ways of sampling the whole hierarchy, as the original's sample.py, returning the
codes of every level (index = level; the top level is the last).

- ancestral: the top level from scratch, then each upsampler given the level above.
- primed: a prompt audio encoded by the VQ-VAE at every level; each level continues its codes.
- continue: saved codes (load_codes_npz) continued to a longer length at every level.
- upsample: saved top-level codes kept; the lower levels sampled from them.

    settings = SamplingSettings(seconds=10, n_samples=2, artist_id=3, genre_ids=[7],
                                lyrics="...")
    codes = sample_codes("ancestral", vqvae, [upsampler_0, upsampler_1, top], settings)
    audio = decode_codes(vqvae, codes)               # {level: float32 [B, T, channels]}

`priors` is indexed by level; levels whose prior is None are not sampled, and sampling stops
at the first missing upsampler (so [None, None, top] gives the top level alone).
"""

from __future__ import annotations

import functools
from typing import Sequence

import numpy as np

from jukebox_tf.codes.hierarchy import CodeHierarchy
from jukebox_tf.errors import JukeboxError
from jukebox_tf.prior import lyrics as lyrics_lib
from jukebox_tf.prior.labels import make_labels
from jukebox_tf.sampling import prior_api
from jukebox_tf.sampling.settings import SamplingSettings
from jukebox_tf.sampling.streaming import interleave
from jukebox_tf.sampling.windowed import level_windows, sample_level

MODES = ("ancestral", "primed", "continue", "upsample")


def audio_length(seconds: float, sample_rate: int, top_hop: int) -> int:
    """Audio samples in `seconds`, rounded down to whole top-level codes (at least one)."""
    return max(int(seconds * sample_rate) // top_hop, 1) * top_hop


def _tile(rows: np.ndarray, n: int) -> np.ndarray:
    """[b, ...] -> [n, ...], cycling the rows (one prompt or code set serves every sample)."""
    return rows[np.arange(n) % len(rows)]


def encode_prompt(vqvae, prompt, prompt_seconds: float | None = None) -> dict[int, np.ndarray]:
    """Prompt audio float [T], [T, C] or [B, T, C] at the VQ-VAE's rate -> codes per level
    {level: int32 [B, T / hop]}, cut to whole top-level codes (as the original's prompt
    duration)."""
    config = vqvae.config
    audio = np.asarray(prompt, np.float32)
    if audio.ndim == 1:
        audio = audio[:, None]
    if audio.ndim == 2:
        audio = audio[None]
    seconds = audio.shape[1] / config.sample_rate if prompt_seconds is None else prompt_seconds
    length = int(seconds * config.sample_rate) // config.hop_lengths[-1] * config.hop_lengths[-1]
    if length == 0 or length > audio.shape[1]:
        raise JukeboxError(f"the prompt has {audio.shape[1] / config.sample_rate:.2f} s: need at "
                           f"least one top-level code ({config.hop_lengths[-1]} samples) and "
                           f"prompt_seconds within it")
    codes = vqvae.encode(audio[:, :length], levels=range(config.levels))
    return {level: np.asarray(c, np.int32) for level, c in enumerate(codes)}


def sample_codes(mode: str, vqvae, priors: Sequence, settings: SamplingSettings, *,
                 prompt=None, prompt_seconds: float | None = None, codes: dict | None = None,
                 progress: bool = True, timings: dict | None = None,
                 on_lowest=None) -> dict[int, np.ndarray]:
    """Codes {level: int32 [n_samples, T_level]} for `mode` (see the module docstring).

    prompt: audio for primed (see encode_prompt); codes: {level: int [B, T]} for continue /
    upsample (B = 1 serves every sample). timings: a dict that gets {level: [each window's
    wall seconds]} of the levels sampled. on_lowest(level, codes int32 [B, T] so far): the
    levels are sampled interleaved, window by window as the lowest sampled level needs them
    (streaming.interleave: the same codes), and this is called after each window of the
    lowest one.
    """
    config = vqvae.config
    levels, hops, rate = config.levels, config.hop_lengths, config.sample_rate
    top = levels - 1
    if mode not in MODES:
        raise JukeboxError(f"unknown sampling mode {mode!r} (choose from {', '.join(MODES)})")
    if len(priors) != levels:
        raise JukeboxError(f"give one prior (or None) per VQ-VAE level: {len(priors)} for "
                           f"{levels} levels")
    temperatures = settings.per_level("temperatures", levels)
    hop_fractions = settings.per_level("hop_fractions", levels)

    primes = {}
    if mode == "primed":
        if prompt is None:
            raise JukeboxError("primed sampling needs a prompt audio")
        primes = encode_prompt(vqvae, prompt, prompt_seconds)
    elif mode in ("continue", "upsample"):
        if not codes or top not in codes:
            raise JukeboxError(f"{mode} needs saved codes with the top level (codes_l{top})")
        primes = {level: np.asarray(c, np.int32) for level, c in codes.items()}
        if mode == "upsample":
            primes = {top: primes[top]}  # lower levels are sampled afresh
    n_samples = settings.n_samples or (len(primes[top]) if primes else 1)
    primes = {level: _tile(c, n_samples) for level, c in primes.items()}

    if mode == "upsample":
        n_audio = primes[top].shape[1] * hops[top]
    elif settings.seconds is None:
        raise JukeboxError(f"{mode} sampling needs the length to reach (seconds)")
    else:
        n_audio = audio_length(settings.seconds, rate, hops[top])
    total_samples = (n_audio if settings.total_seconds is None
                     else int(settings.total_seconds * rate))

    out, jobs = {}, []
    for level in reversed(range(levels)):
        prior = priors[level]
        if mode == "upsample" and level == top:
            out[top] = primes[top]
            continue
        if prior is None:
            if level == top:
                raise JukeboxError(f"{mode} sampling needs the top-level prior")
            break  # no upsampler for this level: stop here
        if prior_api.prior_level(prior) != level:
            raise JukeboxError(f"priors[{level}] models level {prior_api.prior_level(prior)}")
        CodeHierarchy.of(config).check(prior_api.facts(prior), f"the level-{level} prior")
        n_tokens = n_audio // hops[level]
        if level in primes and primes[level].shape[1] > n_tokens:
            raise JukeboxError(f"the level-{level} codes to continue are longer "
                               f"({primes[level].shape[1]}) than {settings.seconds} s "
                               f"({n_tokens})")
        labels, lyric_tokens = level_conditioning(prior, level, n_samples, total_samples,
                                                  settings)
        window_args = dict(
            labels=labels, lyrics=lyric_tokens, prime=primes.get(level), n_samples=n_samples,
            hop_fraction=hop_fractions[level], temperature=temperatures[level],
            top_k=settings.top_k, top_p=settings.top_p, chunk_size=settings.chunk_size,
            seed=settings.seed, jit_compile=use_xla(settings.jit_compile, prior),
            level=level, progress=progress,
            timings=None if timings is None else timings.setdefault(level, []))
        if on_lowest is None:
            out[level] = sample_level(prior, n_tokens, hops, upper_codes=out.get(level + 1),
                                      **window_args)
        else:
            jobs.append((level, functools.partial(
                _windows_of, prior, n_tokens, hops, out.get(level + 1), window_args),
                n_tokens))
    if jobs:
        lowest = jobs[-1][0]
        out.update(interleave(jobs, n_samples, lambda codes: on_lowest(lowest, codes)))
    return out


def _windows_of(prior, n_tokens, hops, given_upper, window_args, upper_codes, upper_ready):
    """streaming.interleave's windows of one level: its upper level is the job above, or the
    codes given (upsample's saved top level)."""
    return level_windows(prior, n_tokens, hops, upper_codes=(
        given_upper if upper_codes is None else upper_codes), upper_ready=upper_ready,
        **window_args)


# Beyond this many weights a prior's token step is mostly a few large matrix products, which
# XLA runs no faster than TensorFlow's kernels on a CPU, while compiling its loop takes minutes
# and GBs there (the released 1B models' 72 layers; benchmarks/README.md); below it the step
# is many small operations that XLA fuses, several times faster.
AUTO_XLA_MAX_CPU_PARAMS = 200_000_000


def use_xla(jit_compile, prior) -> bool:
    """jit_compile True / False, or "auto": on a GPU, and on a CPU for priors of at most
    AUTO_XLA_MAX_CPU_PARAMS weights."""
    if jit_compile != "auto":
        return bool(jit_compile)
    import tensorflow as tf

    if tf.config.list_physical_devices("GPU"):
        return True
    return prior_api.n_params(prior) <= AUTO_XLA_MAX_CPU_PARAMS


def level_conditioning(prior, level: int, n_samples: int, total_samples: int,
                       settings: SamplingSettings) -> tuple:
    """(label rows int32 [n_samples, 4 + G] or None for a prior that takes none, (lyric tokens
    [n_samples, L], lengths [n_samples]) in the prior's own character vocabulary): what
    sample_level reads of one level, from the settings' labels and lyrics."""
    n_genres = prior_api.max_genre_words(prior)
    # Each prior's own character vocabulary (the 1B and 5B models' differ).
    tokenizer = lyrics_lib.tokenizer_for(prior_api.lyric_vocab_size(prior))
    lyric_tokens = lyrics_lib.pad_tokens([tokenizer.encode(settings.lyrics or "")] * n_samples)
    labels = None if n_genres is None else np.stack([make_labels(
        total_samples, 0, 0, *settings.labels_of(level), n_genres)] * n_samples)
    return labels, lyric_tokens


def lyric_alignment_of(vqvae_config, top_prior, top_codes,
                       settings: SamplingSettings) -> dict | None:
    """The top prior's lyric alignment of sampled top-level codes int [B, T] (alignment.py),
    as outputs.write_outputs takes it; None when there are no lyrics or the prior has no
    layer that reads them. settings: sample_codes's (the same labels and lyric windows)."""
    from jukebox_tf.sampling.alignment import lyric_alignment

    config = getattr(top_prior, "config", None)
    if (not settings.lyrics or config is None
            or getattr(config, "lyric_alignment", None) is None):
        return None
    top = vqvae_config.levels - 1
    hop, rate = vqvae_config.hop_lengths[top], vqvae_config.sample_rate
    top_codes = np.asarray(top_codes, np.int32)
    total = (top_codes.shape[1] * hop if settings.total_seconds is None
             else int(settings.total_seconds * rate))
    labels, lyric_tokens = level_conditioning(top_prior, top, len(top_codes), total, settings)
    weights = lyric_alignment(top_prior, top_codes, vqvae_config.hop_lengths, labels=labels,
                              lyrics=lyric_tokens,
                              hop_fraction=settings.per_level("hop_fractions", top + 1)[top])
    tokenizer = lyrics_lib.tokenizer_for(prior_api.lyric_vocab_size(top_prior))
    layer, head = config.lyric_alignment
    return {"weights": weights, "texts": [tokenizer.clean(settings.lyrics)] * len(weights),
            "seconds_per_token": hop / rate, "layer": layer, "head": head}


def decode_codes(vqvae, codes: dict) -> dict[int, np.ndarray]:
    """{level: int [B, T]} -> {level: float32 [B, T * hop, channels]}, one sample at a time
    to bound the decoder's memory on long songs."""
    return {level: np.concatenate([np.asarray(vqvae.decode(c[i:i + 1], level), np.float32)
                                   for i in range(len(c))])
            for level, c in codes.items()}

