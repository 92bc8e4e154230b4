"""Evaluating a trained prior or upsampler on held-out codes: bits per token.

    metrics = evaluate_prior(prior, "codes/eval")          # or a CodesData in memory
    metrics["bits_per_token"]  # the model's own loss, averaged over every real token
    metrics["tokens"], metrics["windows"]

Training draws random windows (PriorTask.sample_batch); evaluation tiles every track with
consecutive windows of n_ctx tokens from token 0 instead, so that the number is the same on
every call and every token is counted once. Each window is assembled as in training (labels
with its offset and length, its lyric window, the level above's codes for an upsampler) and
padding past a track's end or tokens no chunk covered are masked out, as in training.

`encode_and_evaluate` first encodes an audio dataset with a given VQ-VAE into a temporary
codes folder (`codes.encode.encode_dataset`): a model is evaluated on its own VQ-VAE's codes.
"""

from __future__ import annotations

import os
from typing import Mapping

import numpy as np
import tensorflow as tf

from jukebox_tf import storage
from jukebox_tf.errors import JukeboxError
from jukebox_tf.prior import finetune
from jukebox_tf.prior.label_vocab import LabelVocab
from jukebox_tf.codes.tracks import CodesData
from jukebox_tf.prior.task import PriorTask


def window_starts(task: PriorTask) -> tuple[np.ndarray, np.ndarray]:
    """(track index, first token) int64 [W] of the windows tiling every track of the task's
    level from token 0, n_ctx tokens apart."""
    n_ctx = task.config.n_ctx
    if task.config.is_upsampler and n_ctx % task.config.hop_ratio:
        raise JukeboxError(f"n_ctx {n_ctx} is not a multiple of the hop ratio "
                           f"{task.config.hop_ratio}: windows would not line up with the "
                           f"level above")
    lengths = task.data.levels[task.config.level].lengths
    tracks = [np.full(-(-int(n) // n_ctx), i) for i, n in enumerate(lengths)]
    starts = [np.arange(len(t)) * n_ctx for t in tracks]
    return (np.concatenate(tracks).astype(np.int64), np.concatenate(starts).astype(np.int64))


def evaluate_prior(prior, codes: str | CodesData, batch_size: int = 8,
                   max_windows: int | None = None, vocab: LabelVocab | None = None) -> dict:
    """{"bits_per_token", "tokens", "windows"} of `prior` (a TopLevelPrior or Upsampler) over
    the codes folder (or CodesData holding the prior's level and, for an upsampler, the
    level above) `codes`: the first `max_windows` windows when given. vocab: the prior's
    label names when its ids are not the codes' (a fine-tuned prior, or codes of other
    music): the codes' names are looked up in it, unknown ones as id 0."""
    config = prior.config
    if not isinstance(codes, CodesData):
        levels = [config.level] + [config.level + 1] * config.is_upsampler
        codes = CodesData.load(codes, levels)
    if vocab is not None and config.labels:
        codes = finetune.relabel(codes, vocab, None, unknown_ok=True)
    task = PriorTask(config, None, batch_size, data=codes)
    missing = [lv for lv in task.levels_needed if lv not in task.data.levels]
    if missing:
        raise JukeboxError(f"the codes given hold no level(s) {missing}, which the level-"
                           f"{config.level} prior needs")
    tracks, starts = window_starts(task)
    if max_windows is not None:
        tracks, starts = tracks[:max_windows], starts[:max_windows]

    @tf.function(reduce_retracing=True)
    def evaluate(track, start):
        batch = task.window_batch(track, start)
        out = prior(batch, training=False)
        count = tf.reduce_sum(batch["mask"])
        # bits_per_token is the mean over the batch's real tokens: weight it by their count.
        return out["metrics"]["bits_per_token"] * count, count

    total = tokens = 0.0
    for i in range(0, len(tracks), batch_size):
        bits, count = evaluate(tf.constant(tracks[i:i + batch_size]),
                               tf.constant(starts[i:i + batch_size]))
        total, tokens = total + float(bits), tokens + float(count)
    if not tokens:
        raise JukeboxError(f"no codes to evaluate the level-{config.level} prior on")
    return {"bits_per_token": total / tokens, "tokens": int(tokens), "windows": len(tracks)}


def encode_and_evaluate(vqvae, priors: Mapping, data_dir: str, batch_size: int = 8,
                        max_windows: int | None = None, work_dir: str | None = None,
                        vocabs: Mapping | None = None) -> dict:
    """Encodes the audio dataset `data_dir` with `vqvae` into a temporary codes folder (in
    `work_dir`, local or remote, removed afterwards) and evaluates each prior ({key: prior},
    e.g. {level: prior}) on it: {key: evaluate_prior's metrics}. vocabs: {key: the prior's
    LabelVocab} (evaluate_prior's `vocab`), for priors whose label ids are not the data's."""
    from jukebox_tf.codes.encode import encode_dataset

    if not priors:
        return {}
    vocabs = vocabs or {}
    with storage.temporary_directory("eval-codes-", work_dir) as tmp:
        codes_dir = os.path.join(tmp, "codes")
        encode_dataset(vqvae, data_dir, codes_dir, batch_size=batch_size, progress=False)
        levels = sorted({lv for p in priors.values()
                         for lv in (p.config.level, p.config.level + 1)
                         if lv < vqvae.config.levels})
        data = CodesData.load(codes_dir, levels)
        return {key: evaluate_prior(prior, data, batch_size, max_windows, vocabs.get(key))
                for key, prior in priors.items()}
