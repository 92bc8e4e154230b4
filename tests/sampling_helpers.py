"""Stand-in priors implementing the sampling contract (jukebox_tf/sampling/prior_api.py), for
testing the samplers before and independently of the real TopLevelPrior / Upsampler.

StandInPrior: the real factorized-attention Transformer with a token embedding, a start token
(plus artist/genre embeddings and lyric tokens), a learned position embedding, a timing term
from the labels, the level above's codes repeated to this level's rate, and an output tied to
the token embedding. CounterPrior: no weights; its greedy choice is a known function of the
absolute token index, the previous token or the level above, so stitching errors show.
"""

import dataclasses
from types import SimpleNamespace

import numpy as np
import tensorflow as tf

from jukebox_tf.prior.config import PriorConfig
from jukebox_tf.prior.labels import ARTIST, GENRES, LENGTH, OFFSET, TOTAL_LENGTH
from jukebox_tf.prior.transformer import Transformer


@dataclasses.dataclass(frozen=True)
class StandInConfig(PriorConfig):
    level: int = 2
    max_genre_words: int = 2
    n_lyric_tokens: int = 0
    upper_bins: int = 0  # codes of the level above (0 at the top)
    upper_ratio: int = 4  # this level's codes per code of the level above


class StandInPrior:
    def __init__(self, config: StandInConfig, seed: int = 0, std: float = 0.2):
        self.config = config
        rng = np.random.default_rng(seed)
        width, bins = config.width, config.l_bins

        def weight(*shape):
            return tf.Variable(rng.normal(0.0, std, shape).astype(np.float32))

        self.x_emb, self.start = weight(bins, width), weight(width)
        self.pos_emb, self.time = weight(config.n_ctx, width), weight(width)
        self.artist_emb, self.genre_emb = weight(16, width), weight(16, width)
        self.lyric_emb = weight(80, width)
        self.upper_emb = weight(max(config.upper_bins, 1), width)
        self.transformer = Transformer.from_prior_config(config)
        self.transformer.build((None, None, width))
        weights = self.transformer.get_weights()
        self.transformer.set_weights([rng.normal(0.0, std, w.shape).astype(np.float32)
                                      for w in weights])

    def conditioning(self, inputs, training=False):
        y = tf.convert_to_tensor(inputs["labels"])
        start = (self.start + tf.gather(self.artist_emb, y[:, ARTIST])
                 + tf.reduce_sum(tf.gather(self.genre_emb, tf.maximum(y[:, GENRES:], 0))
                                 * tf.cast(y[:, GENRES:, None] >= 0, tf.float32), axis=1))
        if self.config.n_lyric_tokens:
            start += tf.reduce_mean(tf.gather(self.lyric_emb, inputs["lyrics"]), axis=1)
        where = tf.cast(y[:, OFFSET] + y[:, LENGTH] // 2, tf.float32) / tf.cast(
            y[:, TOTAL_LENGTH], tf.float32)
        x_cond = tf.tile((where[:, None] * self.time)[:, None], [1, self.config.n_ctx, 1])
        if self.config.level < 2:
            upper = tf.gather(self.upper_emb, inputs["upper_codes"])
            x_cond += tf.repeat(upper, self.config.upper_ratio, axis=1)
        return {"start": start, "x_cond": x_cond}

    def init_cache(self, batch_size, cond):
        return self.transformer.init_cache(batch_size, tf.float32)

    def step(self, prev_tokens, position, cache, cond):
        length = prev_tokens.shape[1]
        positions = tf.cast(position, tf.int32) + tf.range(length)
        x = tf.gather(self.x_emb, prev_tokens)
        x = tf.where((positions == 0)[None, :, None], cond["start"][:, None], x)
        x_cond = tf.gather(cond["x_cond"], positions, axis=1)
        x = x + tf.gather(self.pos_emb, positions) + x_cond
        h, cache = self.transformer(x, cache=cache, position=position)
        return tf.einsum("btw,vw->btv", h + x_cond, self.x_emb), cache


class CounterPrior:
    """Greedy output at absolute index t (window offset / hop_length + in-window position):
    mode "index": (t + upper_codes[t // upper_ratio]) % l_bins (upper term only below the
    top); mode "chain": the previous token + 1 (t at a window's first position). Records the
    conditioning inputs of every window in `calls`."""

    def __init__(self, n_ctx, l_bins, level, hop_length, mode="index", upper_ratio=4,
                 max_genre_words=1, n_lyric_tokens=0):
        self.config = SimpleNamespace(n_ctx=n_ctx, l_bins=l_bins, level=level,
                                      max_genre_words=max_genre_words,
                                      n_lyric_tokens=n_lyric_tokens)
        self.hop_length, self.mode, self.upper_ratio = hop_length, mode, upper_ratio
        self.calls = []

    def conditioning(self, inputs, training=False):
        self.calls.append({k: np.asarray(v) for k, v in inputs.items()})
        first = tf.convert_to_tensor(inputs["labels"])[:, OFFSET] // self.hop_length
        batch = first.shape[0]
        upper = inputs.get("upper_codes", tf.zeros([batch, 1], tf.int32))
        return {"first": first, "upper": tf.convert_to_tensor(upper)}

    def init_cache(self, batch_size, cond):
        return {"seen": tf.zeros([batch_size], tf.int32)}

    def step(self, prev_tokens, position, cache, cond):
        length = prev_tokens.shape[1]
        positions = tf.cast(position, tf.int32) + tf.range(length)
        index = cond["first"][:, None] + positions[None]
        if self.mode == "chain":
            target = tf.where(positions[None] == 0, index, prev_tokens + 1)
        else:
            target = index
            if self.config.level < 2:
                target += tf.gather(cond["upper"], positions // self.upper_ratio, axis=1)
        logits = 10.0 * tf.one_hot(target % self.config.l_bins, self.config.l_bins)
        return logits, {"seen": cache["seen"] + length}
