"""Label conditioning of the priors: artist, genre and timing, as the original's LabelConditioner.

The label tensor `y`, int32 or int64 [B, 4 + max_genre_words] (the original's layout minus the
lyric tokens, which travel separately here):

| column    | meaning                                                              |
|-----------|----------------------------------------------------------------------|
| 0         | total_length: audio samples in the whole track                       |
| 1         | offset: first audio sample of the prior's window within the track    |
| 2         | length: audio samples the window spans (n_ctx * hop of its level)    |
| 3         | artist id (0 = unknown)                                              |
| 4 ...     | genre word ids (0 = unknown; < 0 = empty slot, ignored)              |

The start embedding (artist + sum of genre words) replaces the prior's start token; the timing
embedding (total length, absolute and relative position, each binned over its range) is added
at every position of priors that have no level above to condition on.
"""

from __future__ import annotations

from typing import Sequence

import keras
import numpy as np
import tensorflow as tf

from jukebox_tf.layers import PACKAGE

TOTAL_LENGTH, OFFSET, LENGTH, ARTIST, GENRES = 0, 1, 2, 3, 4

# The original's top priors, in samples at 44.1 kHz; the lower bound of total length differs
# per model (60 s for 5B, 23.8 s for 5B lyrics, 17.8 s for 1B lyrics).
PAPER_T_RANGES = ((2646000.0, 26460000.0), (0.0, 26460000.0), (0.0, 1.0))


def time_ranges(sample_rate: int, min_duration: float, max_duration: float):
    """(total length, absolute position, relative position) ranges for songs of
    [min_duration, max_duration) seconds."""
    return ((min_duration * sample_rate, max_duration * sample_rate),
            (0.0, max_duration * sample_rate), (0.0, 1.0))


def make_labels(total_length: int, offset: int, length: int, artist_id: int,
                genre_ids: Sequence[int], max_genre_words: int) -> np.ndarray:
    """One label row, int32 [4 + max_genre_words]; genre words past the slots are dropped."""
    genres = [g for g in genre_ids if g >= 0][:max_genre_words]
    genres += [-1] * (max_genre_words - len(genres))
    return np.array([total_length, offset, length, artist_id, *genres], np.int32)


def make_labels_tf(total_length, offset, length, artist_id, genre_ids,
                   max_genre_words: int) -> tf.Tensor:
    """`make_labels` in graph, for tf.data: scalars and a 1-D (or sparse) genre_ids."""
    if isinstance(genre_ids, tf.SparseTensor):
        genre_ids = tf.sparse.to_dense(genre_ids, default_value=-1)
    genres = tf.cast(tf.reshape(genre_ids, [-1]), tf.int32)
    genres = tf.boolean_mask(genres, genres >= 0)[:max_genre_words]
    genres = tf.pad(genres, [[0, max_genre_words - tf.shape(genres)[0]]], constant_values=-1)
    head = tf.stack([tf.cast(v, tf.int32) for v in (total_length, offset, length, artist_id)])
    return tf.ensure_shape(tf.concat([head, genres], 0), [4 + max_genre_words])


@keras.saving.register_keras_serializable(PACKAGE)
class RangeEmbedding(keras.layers.Layer):
    """Embeds values of [pos_min, pos_max) cut into `bins` equal bins.

    call(start [B, 1], end [B, 1] or None) -> [B, n_time, W]. With n_time > 1 the positions are
    start + (end - start) * i / n_time, i < n_time (end needed); with n_time == 1, start alone.
    `clamp` clips end into the range first (the relative position of a window running past the
    song's end). Out-of-range bins are clipped to the edge bins.
    """

    def __init__(self, n_time: int, bins: int, pos_range, out_width: int,
                 init_scale: float = 1.0, clamp: bool = False, **kwargs):
        super().__init__(**kwargs)
        self.n_time, self.bins, self.out_width = n_time, bins, out_width
        self.pos_range = tuple(float(v) for v in pos_range)
        self.init_scale, self.clamp = init_scale, clamp

    @property
    def input_dtype(self):
        # Positions stay float32 under mixed precision: float16 cannot hold sample offsets.
        return "float32"

    def build(self, input_shape=None):
        self.embeddings = self.add_weight(
            name="embeddings", shape=(self.bins, self.out_width),
            initializer=keras.initializers.RandomNormal(stddev=0.01 * self.init_scale))
        super().build(input_shape)

    def bin_indices(self, start, end=None) -> tf.Tensor:
        """int32 [B, n_time] bins; float32 arithmetic in the original's order."""
        lo, hi = self.pos_range
        start = tf.cast(start, tf.float32)
        if self.n_time == 1:
            position = start
        else:
            if end is None:
                raise ValueError("RangeEmbedding with n_time > 1 needs an end position")
            end = tf.cast(end, tf.float32)
            if self.clamp:
                end = tf.clip_by_value(end, lo, hi)
            steps = tf.range(self.n_time, dtype=tf.float32)[None] / float(self.n_time)
            position = start + (end - start) * steps
        normalised = (position - lo) / (hi - lo)
        bins = tf.cast(tf.floor(float(self.bins) * normalised), tf.int32)
        return tf.clip_by_value(bins, 0, self.bins - 1)

    def call(self, start, end=None):
        return tf.cast(tf.gather(self.embeddings, self.bin_indices(start, end)),
                       self.compute_dtype)

    def compute_output_shape(self, start_shape, end_shape=None):
        return (start_shape[0], self.n_time, self.out_width)

    def get_config(self):
        return super().get_config() | {
            "n_time": self.n_time, "bins": self.bins, "pos_range": self.pos_range,
            "out_width": self.out_width, "init_scale": self.init_scale, "clamp": self.clamp}


@keras.saving.register_keras_serializable(PACKAGE)
class LabelConditioner(keras.layers.Layer):
    """y int [B, 4 + max_genre_words] (module docstring) -> (start_emb [B, 1, W],
    pos_emb [B, n_time, W], or None when include_time_signal is False).

    Ids outside [0, bins) count as unknown (0); genre slots < 0 are masked out.
    """

    def __init__(self, artist_bins: int, genre_bins: int, out_width: int,
                 max_genre_words: int, n_time: int = 1, include_time_signal: bool = True,
                 t_bins: int = 128, t_ranges=None, init_scale: float = 1.0, **kwargs):
        super().__init__(**kwargs)
        if include_time_signal and (t_ranges is None or len(t_ranges) != 3):
            raise ValueError("include_time_signal needs t_ranges: (total length, absolute "
                             "position, relative position) ranges; see time_ranges()")
        self.artist_bins, self.genre_bins, self.out_width = artist_bins, genre_bins, out_width
        self.max_genre_words, self.n_time = max_genre_words, n_time
        self.include_time_signal, self.t_bins, self.init_scale = (include_time_signal, t_bins,
                                                                  init_scale)
        self.t_ranges = (None if t_ranges is None
                         else tuple(tuple(float(v) for v in r) for r in t_ranges))
        if include_time_signal:
            total, absolute, relative = self.t_ranges
            policy = self.dtype_policy
            self.total_length_emb = RangeEmbedding(1, t_bins, total, out_width, init_scale,
                                                   name="total_length", dtype=policy)
            self.absolute_pos_emb = RangeEmbedding(n_time, t_bins, absolute, out_width,
                                                   init_scale, name="absolute_pos", dtype=policy)
            self.relative_pos_emb = RangeEmbedding(n_time, t_bins, relative, out_width,
                                                   init_scale, clamp=True, name="relative_pos",
                                                   dtype=policy)

    @property
    def label_width(self) -> int:
        return 4 + self.max_genre_words

    def build(self, input_shape=None):
        if input_shape is not None and input_shape[-1] not in (None, self.label_width):
            raise ValueError(f"labels must be [B, {self.label_width}], got {input_shape}")
        init = keras.initializers.RandomNormal(stddev=0.01 * self.init_scale)
        self.artist_emb = self.add_weight(name="artist_emb", initializer=init,
                                          shape=(self.artist_bins, self.out_width))
        self.genre_emb = self.add_weight(name="genre_emb", initializer=init,
                                         shape=(self.genre_bins, self.out_width))
        if self.include_time_signal:
            for layer in (self.total_length_emb, self.absolute_pos_emb, self.relative_pos_emb):
                layer.build((None, 1))
        super().build(input_shape)

    @staticmethod
    def _known(ids, bins):
        return tf.where((ids >= 0) & (ids < bins), ids, 0)

    def call(self, y):
        y = tf.cast(y, tf.int32)
        artist = self._known(y[:, ARTIST:ARTIST + 1], self.artist_bins)
        genres = y[:, GENRES:]
        words = tf.gather(self.genre_emb, self._known(genres, self.genre_bins))
        mask = tf.cast(genres >= 0, words.dtype)[..., None]
        genre = tf.reduce_sum(words * mask, axis=1, keepdims=True)
        start_emb = tf.cast(tf.gather(self.artist_emb, artist) + genre, self.compute_dtype)
        if not self.include_time_signal:
            return start_emb, None
        # max(., 1): an unknown (0) track length must not make the relative position NaN.
        total = tf.maximum(tf.cast(y[:, TOTAL_LENGTH:TOTAL_LENGTH + 1], tf.float32), 1.0)
        start = tf.cast(y[:, OFFSET:OFFSET + 1], tf.float32)
        end = start + tf.cast(y[:, LENGTH:LENGTH + 1], tf.float32)
        pos_emb = (self.total_length_emb(total) + self.absolute_pos_emb(start, end)
                   + self.relative_pos_emb(start / total, end / total))
        return start_emb, pos_emb

    def compute_output_shape(self, input_shape):
        batch = input_shape[0]
        pos = (batch, self.n_time, self.out_width) if self.include_time_signal else None
        return (batch, 1, self.out_width), pos

    def get_config(self):
        return super().get_config() | {
            "artist_bins": self.artist_bins, "genre_bins": self.genre_bins,
            "out_width": self.out_width, "max_genre_words": self.max_genre_words,
            "n_time": self.n_time, "include_time_signal": self.include_time_signal,
            "t_bins": self.t_bins, "t_ranges": self.t_ranges, "init_scale": self.init_scale}


def count_label_conditioner_params(artist_bins: int, genre_bins: int, out_width: int,
                                   include_time_signal: bool = True, t_bins: int = 128) -> int:
    """Parameters of a LabelConditioner: the embedding tables, nothing else."""
    timing = 3 * t_bins if include_time_signal else 0
    return (artist_bins + genre_bins + timing) * out_width
