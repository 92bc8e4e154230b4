"""Training the priors with the shared loop (`jukebox_tf.training`): the priors' `Task`.

The codes dataset (`jukebox-tf encode`, codes/format.py) holds one record per audio chunk. The
task loads the codes of the prior's level (and of the level above, for an upsampler) into
memory once, per track (codes/tracks.py); tokens no chunk covers are masked out of the loss.

Batches are drawn by pure tf.data over constant tensors with stateless random ops: a track
with probability proportional to its length, a window of n_ctx tokens in it uniformly (a
multiple of the hop ratio for upsamplers, so the level above lines up), padded and masked when
the track is shorter. Each window carries its labels (offset and length in audio samples),
its lyric window (lyrics.py's linear alignment) and the codes of the level above.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Sequence

import numpy as np
import tensorflow as tf

from jukebox_tf import storage
from jukebox_tf.codes.format import load_codes_manifest
from jukebox_tf.codes.hierarchy import CodeHierarchy, PriorFacts, hop_ratio
from jukebox_tf.codes.tracks import CodesData
from jukebox_tf.errors import JukeboxError
from jukebox_tf.prior import finetune, lyrics as lyrics_lib
from jukebox_tf.prior.config import LYRIC_LAYOUTS, PriorConfig
from jukebox_tf.prior.label_vocab import LabelVocab
from jukebox_tf.prior.labels import LENGTH, OFFSET, make_labels
from jukebox_tf.prior.prior import build_prior
from jukebox_tf.training.warm_start import starting_checkpoint, warm_start

# What task.json keeps of the codes manifest: what sampling needs to turn codes into audio
# and names into label ids.
MANIFEST_KEYS = ("levels", "hop_lengths", "l_bins", "sample_rate", "artists", "genres",
                 "vqvae_run")


def _hop_ratio_split(ratio: int) -> tuple[int, int]:
    """(down_t, stride_t) with stride_t ** down_t == ratio: stride-2 stages when possible."""
    down_t = int(round(math.log2(ratio))) if ratio > 1 else 0
    return (down_t, 2) if ratio > 1 and 2 ** down_t == ratio else (1, ratio)


def prior_config_for_codes(base: PriorConfig, data: CodesData, level: int, labels: bool = True,
                           lyrics: bool | str = False) -> PriorConfig:
    """`base` (a preset: the transformer's sizes) fitted to a codes dataset: its level, code
    vocabulary, label vocabularies and durations, the hop ratio to the level above, lyrics
    (True or "encoder": a lyric encoder read by cross-attention, as the 5B lyrics model;
    "prefix": characters before the codes in one transformer, as the 1B lyrics model)."""
    manifest = data.manifest
    levels, hops = manifest["levels"], manifest["hop_lengths"]
    overrides = dict(level=level, levels=levels, l_bins=manifest["l_bins"],
                     sample_rate=manifest["sample_rate"], labels=labels)
    if level < levels - 1:
        ratio = hop_ratio(hops, level)
        overrides["cond_down_t"], overrides["cond_stride_t"] = _hop_ratio_split(ratio)
    if labels:
        # Vocabularies include id 0 = unknown, so a dataset without labels has one of each.
        overrides.update(artist_bins=max(1, len(manifest["artists"])),
                         genre_bins=max(1, len(manifest["genres"])), min_duration=0.0,
                         max_duration=float(max(1, math.ceil(data.max_track_seconds))))
    config = dataclasses.replace(base, **overrides)
    if not lyrics:
        return config
    layout = "encoder" if lyrics is True else lyrics
    if layout not in LYRIC_LAYOUTS:
        raise JukeboxError(f"lyrics {layout!r}: choose from {', '.join(LYRIC_LAYOUTS)}")
    return LYRIC_LAYOUTS[layout](config)


class PriorTask:
    """The `Task` (training/task.py) of a TopLevelPrior or Upsampler over a codes dataset."""

    name = "prior"

    def __init__(self, config: PriorConfig, codes_dir: str | None, global_batch_size: int,
                 data: CodesData | None = None, codes_info: dict | None = None,
                 vocab: LabelVocab | None = None, init_from: dict | None = None,
                 freeze: Sequence[str] = ()):
        """vocab: the label names of the model when they are not the codes' own (a fine-tuned
        model's; the codes' ids are mapped onto them). init_from: {"run": run dir, "labels":
        "map" or "replace"} to start from that run's weights (finetune.py). freeze: the
        parts training leaves unchanged (finetune.FREEZABLE)."""
        self.config, self.codes_dir, self.global_batch_size = config, codes_dir, global_batch_size
        if data is None and codes_dir is not None:
            data = CodesData.load(codes_dir, self.levels_needed)
        if data is not None and vocab is not None:
            data = finetune.relabel(data, vocab, codes_dir)
        self.data = data
        if data is not None:
            codes_info = {k: data.manifest.get(k) for k in MANIFEST_KEYS}
            if vocab is not None:
                codes_info.update(vocab.to_codes_info())
            self._check(codes_info)
        self.codes_info = codes_info or {}
        self.init_from, self.freeze = init_from, tuple(freeze)
        finetune.check_freeze(self.freeze, config)
        self._tensors = None

    @classmethod
    def from_codes(cls, base: PriorConfig, codes_dir: str, level: int, global_batch_size: int,
                   labels: bool = True, lyrics: bool | str = False) -> "PriorTask":
        """A task whose config is `base` fitted to the codes (prior_config_for_codes)."""
        manifest = load_codes_manifest(codes_dir)
        levels = [level] + ([level + 1] if level < manifest["levels"] - 1 else [])
        data = CodesData.load(codes_dir, levels)
        config = prior_config_for_codes(base, data, level, labels, lyrics)
        return cls(config, codes_dir, global_batch_size, data)

    @classmethod
    def from_run(cls, run_dir: str, codes_dir: str, level: int, global_batch_size: int,
                 labels: str = "map", freeze: Sequence[str] = ()) -> "PriorTask":
        """A task that fine-tunes the prior of `run_dir` (a train-prior or import-weights run)
        on the codes of `codes_dir`: the run's configuration, label vocabulary extended by
        the codes' names (labels="map") or replaced by them ("replace"); see finetune.py."""
        saved = prior_run_info(run_dir)
        starting_checkpoint(run_dir)
        config = PriorConfig.from_dict(saved["prior"])
        if config.level != level:
            raise JukeboxError(f"--init-from {run_dir}: a prior of level {config.level}, not "
                               f"of level {level}")
        manifest = load_codes_manifest(codes_dir)
        finetune.check_codes_match(run_dir, saved["codes"], codes_dir, manifest)
        vocab = None
        if config.labels:
            vocab = finetune.fine_tune_vocab(saved["codes"], manifest, labels)
            config = dataclasses.replace(config, artist_bins=len(vocab.artists),
                                         genre_bins=len(vocab.genres))
        return cls(config, codes_dir, global_batch_size, vocab=vocab,
                   init_from={"run": storage.abspath(run_dir), "labels": labels},
                   freeze=freeze)

    @property
    def _tokenizer(self) -> lyrics_lib.LyricsTokenizer:
        return lyrics_lib.tokenizer_for(self.config.n_vocab)

    @property
    def levels_needed(self) -> list[int]:
        level = self.config.level
        return [level, level + 1] if self.config.is_upsampler else [level]

    def _check(self, info: dict):
        config = self.config
        facts = PriorFacts(level=config.level, levels=config.levels, l_bins=config.l_bins,
                           hop_ratio=config.hop_ratio if config.is_upsampler else None)
        CodeHierarchy.of(info).check(facts, f"codes {self.codes_dir or ''}".rstrip(),
                                     "the prior config is for")

    # -- the Task protocol -------------------------------------------------------------------

    def build(self):
        return build_prior(self.config)

    def dataset(self, input_context, seed: int):
        if self.data is None:
            raise JukeboxError("this PriorTask has no codes to train on (codes_dir=None)")
        batch_size, pipeline, pipelines = self.global_batch_size, 0, 1
        if input_context is not None:
            batch_size = input_context.get_per_replica_batch_size(batch_size)
            pipeline, pipelines = (input_context.input_pipeline_id,
                                   input_context.num_input_pipelines)

        @tf.autograph.experimental.do_not_convert  # plain TF ops: converting costs seconds
        def batch(index):
            # Element `index` of pipeline p draws with counter index * pipelines + p: no two
            # pipelines (or elements) share a seed, and a seed replays the same batches.
            counter = index * pipelines + pipeline
            return self.sample_batch(tf.stack([tf.constant(seed, tf.int64), counter]),
                                     batch_size)

        return (tf.data.Dataset.counter().map(batch, num_parallel_calls=tf.data.AUTOTUNE)
                .prefetch(tf.data.AUTOTUNE))

    def loss(self, model, batch, training: bool):
        out = model(batch, training=training, return_logits=False)
        return out["loss"], out["metrics"]

    def warm_start(self, model) -> None:
        if self.init_from is None:
            return
        tables = []
        if self.config.labels:
            tables = [model.label_conditioner.artist_emb, model.label_conditioner.genre_emb]
        if self.init_from["labels"] == "replace":
            warm_start(model, self.init_from["run"], skip=tables)
        else:
            warm_start(model, self.init_from["run"],
                       adapt=[(t, finetune.mean_rows(t.shape[0])) for t in tables])

    def frozen_variables(self, model) -> list:
        return finetune.frozen_variables(model, self.freeze)

    def media_summaries(self, model, batch, step: int) -> None:
        """Histograms of the target codes and the model's most likely codes."""
        out = model(batch, training=False)
        bins = min(self.config.l_bins, 128)
        tf.summary.histogram("codes/target", batch["codes"], step=step, buckets=bins)
        tf.summary.histogram("codes/predicted", tf.argmax(out["logits"], -1), step=step,
                             buckets=bins)

    def config_dict(self) -> dict:
        saved = {"prior": self.config.to_dict(), "codes_dir": self.codes_dir and storage.abspath(
                     self.codes_dir), "global_batch_size": self.global_batch_size,
                 "codes": {"level": self.config.level, **self.codes_info},
                 "lyrics_vocab": self._tokenizer.vocab}
        if self.init_from is not None:
            saved["init_from"] = self.init_from
        if self.freeze:
            saved["freeze"] = list(self.freeze)
        return saved

    # -- windows -----------------------------------------------------------------------------

    def _constants(self) -> dict:
        """The dataset as tensors, created once and eagerly (outside any graph being traced),
        so tf.data functions capture them as inputs rather than embed them as constants."""
        if self._tensors is None:
            with tf.init_scope():
                self._tensors = self._make_constants()
        return self._tensors

    def _make_constants(self) -> dict:
        data, config = self.data, self.config
        t = {}
        for level, codes in data.levels.items():
            t[level] = {name: tf.constant(getattr(codes, name))
                        for name in ("codes", "valid", "starts", "lengths")}
        t["log_weights"] = tf.constant(np.log(np.maximum(
            data.levels[config.level].lengths, 1)).astype(np.float32))
        if config.labels:
            # Per track, with offset and length filled in per window.
            t["labels"] = tf.constant(np.stack([
                make_labels(length, 0, 0, artist, genres, config.max_genre_words)
                for length, artist, genres in zip(data.track_lengths, data.artist_ids,
                                                  data.genre_ids)]))
        if config.lyrics:
            tokens, lengths = lyrics_lib.pad_tokens([self._tokenizer.encode(text)
                                                     for text in data.lyrics])
            t["lyric_tokens"], t["lyric_lengths"] = tf.constant(tokens), tf.constant(lengths)
        t["track_lengths"] = tf.constant(data.track_lengths)
        return t

    def _gather_window(self, level: int, track, start, n: int):
        """Codes int32 [B, n] of `level` from token `start` of each track, and whether each is
        real (inside the track and covered by a chunk)."""
        t = self._constants()[level]
        length = tf.gather(t["lengths"], track)[:, None]
        position = start[:, None] + tf.range(n, dtype=tf.int64)[None]
        inside = position < length
        index = tf.gather(t["starts"], track)[:, None] + tf.minimum(position, length - 1)
        codes = tf.where(inside, tf.cast(tf.gather(t["codes"], index), tf.int32), 0)
        return codes, inside & tf.gather(t["valid"], index)

    def sample_batch(self, seed, batch_size: int) -> dict:
        """One batch of random windows from a stateless seed int64 [2] (see module docstring):
        {"codes", "mask", "labels"?, "lyrics"?, "upper_codes"?}."""
        config, t = self.config, self._constants()
        n_ctx, ratio = config.n_ctx, config.hop_ratio if config.is_upsampler else 1
        track_seed, start_seed = tf.unstack(
            tf.random.experimental.stateless_split(tf.cast(seed, tf.int64), 2))
        track = tf.random.stateless_categorical(t["log_weights"][None], batch_size,
                                                track_seed)[0]
        length = tf.gather(t[config.level]["lengths"], track)
        # Window starts in units of `ratio` tokens, uniform over those that fit in the track.
        units = tf.maximum(length - n_ctx, 0) // ratio + 1
        uniform = tf.random.stateless_uniform([batch_size], start_seed, dtype=tf.float64)
        start = tf.minimum(tf.cast(uniform * tf.cast(units, tf.float64), tf.int64),
                           units - 1) * ratio
        return self.window_batch(track, start)

    def window_batch(self, track, start) -> dict:
        """The batch of the windows starting at token `start` int64 [B] of tracks `track` [B]:
        what `sample_batch` yields after its random draw (evaluation tiles tracks with it)."""
        config, t = self.config, self._constants()
        n_ctx, ratio = config.n_ctx, config.hop_ratio if config.is_upsampler else 1
        hop = self.codes_info["hop_lengths"][config.level]
        codes, mask = self._gather_window(config.level, track, start, n_ctx)
        batch = {"codes": codes, "mask": tf.cast(mask, tf.float32)}
        offset, duration = start * hop, n_ctx * hop
        if config.labels:
            labels = tf.gather(t["labels"], track)
            columns = tf.range(config.label_width)[None]
            labels = tf.where(columns == OFFSET, tf.cast(offset, tf.int32)[:, None], labels)
            batch["labels"] = tf.where(columns == LENGTH, duration, labels)
        if config.lyrics:
            batch["lyrics"], _ = lyrics_lib.lyric_window_tf(
                tf.gather(t["lyric_tokens"], track), tf.gather(t["track_lengths"], track),
                offset, duration, config.n_lyric_tokens,
                lengths=tf.gather(t["lyric_lengths"], track))
        if config.is_upsampler:
            batch["upper_codes"], _ = self._gather_window(config.level + 1, track,
                                                          start // ratio, n_ctx // ratio)
        return batch


def prior_run_info(run_dir: str) -> dict:
    """task.json of a `train-prior` run: {"prior": config dict, "codes": {level, levels,
    hop_lengths, l_bins, sample_rate, artists, genres, vqvae_run}, ...}."""
    from jukebox_tf.training.run_dir import read_task_json

    return read_task_json(run_dir, "prior", "prior", "train-prior")


def prior_run_vocab(run_dir: str) -> LabelVocab:
    """The artist and genre names of a prior run's label ids."""
    return LabelVocab.from_codes_info(prior_run_info(run_dir).get("codes") or {})


def load_prior_run(run_dir: str, use_ema: bool = True):
    """The trained prior of a `train-prior` run directory (EMA weights by default); its run's
    codes information is `prior_run_info(run_dir)["codes"]`."""
    from jukebox_tf.training import restore_for_eval

    saved = prior_run_info(run_dir)
    task = PriorTask(PriorConfig.from_dict(saved["prior"]), None, 1,
                     codes_info=saved.get("codes"))
    return restore_for_eval(task, run_dir, use_ema=use_ema)
