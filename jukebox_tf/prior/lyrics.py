"""Lyrics as character tokens, and the window of them a prior sees.

Text is transliterated to ASCII (unidecode), stripped of every character outside a fixed
vocabulary, and mapped to ids 1..n; id 0 is padding (it decodes to ''), as in the original's
text processor. The symbol order is the original's, so token ids match its models.

Linear alignment: a prior window of `duration` samples starting at `offset` in a track of
`total_length` samples sees the `n_tokens` consecutive tokens centred at the same fraction of
the lyrics (clamped to stay inside them); lyrics shorter than `n_tokens` are left-padded with 0.

`lyric_window` (numpy) is for data preparation; `tokenize_tf` and `lyric_window_tf` are pure TF
(no py_function), for tf.data maps and in-graph sampling, and agree with the numpy versions.
"""

from __future__ import annotations

import math
import string
from typing import Sequence

import numpy as np
import tensorflow as tf

_ALNUM = string.ascii_uppercase + string.ascii_lowercase + string.digits
VOCAB_V2 = _ALNUM + ".,:;!?-+'\"()[] \t\n"  # 79 symbols, 80 ids: the 5B models
VOCAB_V3 = _ALNUM + ".,:;!?-'\"()[] \t\n"  # 78 symbols, 79 ids: the 1B lyrics model
PAD = 0


class LyricsTokenizer:
    """Characters <-> ids; `vocab_size` counts the padding id 0."""

    def __init__(self, vocab: str = VOCAB_V2):
        if len(set(vocab)) != len(vocab) or any(ord(c) >= 128 for c in vocab):
            raise ValueError("the vocabulary must be distinct ASCII characters")
        self.vocab = vocab
        self.vocab_size = len(vocab) + 1
        self._ids = {c: i + 1 for i, c in enumerate(vocab)}
        # Codepoint -> id for the TF tokenizer; -1 marks characters that are dropped.
        table = np.full(128, -1, np.int32)
        for c, i in self._ids.items():
            table[ord(c)] = i
        self._ascii_table = table

    def clean(self, text: str) -> str:
        """ASCII transliteration, '\\' as a line break, out-of-vocabulary characters dropped."""
        from unidecode import unidecode

        text = unidecode(text).replace("\\", "\n")
        return "".join(c for c in text if c in self._ids)

    def encode(self, text: str) -> list[int]:
        """Text -> token ids (never 0: unknown characters are dropped, not mapped)."""
        return [self._ids[c] for c in self.clean(text)]

    def decode(self, ids: Sequence[int]) -> str:
        """Token ids -> text; padding and out-of-range ids decode to ''."""
        vocab, n = self.vocab, len(self.vocab)
        return "".join(vocab[i - 1] for i in map(int, ids) if 1 <= i <= n)

    def tokenize_tf(self, text) -> tf.Tensor:
        """Scalar string tensor -> int32 [L] ids, in graph.

        Equal to `encode` for text `clean` leaves unchanged (vocabulary ASCII); other non-ASCII
        characters are dropped rather than transliterated, so datasets should store lyrics
        already cleaned (or tokens) when they hold non-ASCII text.
        """
        points = tf.strings.unicode_decode(text, "UTF-8", errors="replace")
        points = tf.where(points == ord("\\"), ord("\n"), points)
        ascii_ = (points >= 0) & (points < 128)
        ids = tf.gather(tf.constant(self._ascii_table), tf.where(ascii_, points, 0))
        ids = tf.where(ascii_, ids, -1)
        return tf.boolean_mask(ids, ids > 0)


TOKENIZER = LyricsTokenizer()  # the 5B models' vocabulary
VOCAB_SIZE = TOKENIZER.vocab_size  # 80
_TOKENIZERS = {VOCAB_SIZE: TOKENIZER, len(VOCAB_V3) + 1: LyricsTokenizer(VOCAB_V3)}


def tokenizer_for(n_vocab: int) -> LyricsTokenizer:
    """The tokenizer of a prior's character vocabulary (config.n_vocab ids with padding): 80 =
    the 5B models' (VOCAB_V2), 79 = the 1B lyrics model's (VOCAB_V3)."""
    try:
        return _TOKENIZERS[int(n_vocab)]
    except KeyError:
        raise ValueError(f"no lyric vocabulary has {n_vocab} ids: the priors read "
                         f"{sorted(_TOKENIZERS)} (5B: {VOCAB_SIZE}, 1B lyrics: "
                         f"{len(VOCAB_V3) + 1})") from None
encode = TOKENIZER.encode
decode = TOKENIZER.decode
clean = TOKENIZER.clean
tokenize_tf = TOKENIZER.tokenize_tf


def _window_start(n_full, centre, n_tokens):
    # One formula covers both cases: when n_full < n_tokens it is negative, and the positions
    # before 0 are the left padding.
    return min(max(centre - n_tokens // 2, 0), n_full - n_tokens)


def lyric_window(tokens: Sequence[int], total_length: int, offset: int, duration: int,
                 n_tokens: int) -> tuple[np.ndarray, np.ndarray]:
    """The `n_tokens` tokens aligned with audio [offset, offset + duration) of the track.

    Returns (ids int32 [n_tokens], indices int32 [n_tokens]): indices into `tokens`, -1 where
    padded (ids 0). total_length <= 0 is treated as 1.
    """
    tokens = np.asarray(tokens, np.int32).reshape(-1)
    n_full = len(tokens)
    # Float64 in this order, floored, as the original; lyric_window_tf repeats it exactly.
    centre = math.floor(float(n_full) * (float(offset) + float(duration) / 2.0)
                        / float(max(int(total_length), 1)))
    indices = _window_start(n_full, centre, n_tokens) + np.arange(n_tokens, dtype=np.int32)
    valid = indices >= 0
    ids = np.where(valid, tokens[np.maximum(indices, 0)] if n_full else 0, PAD)
    return ids.astype(np.int32), np.where(valid, indices, -1).astype(np.int32)


def lyric_window_tf(tokens, total_length, offset, duration, n_tokens: int, lengths=None):
    """TF `lyric_window`, optionally batched.

    tokens: int [L] or [B, L] (rows padded past `lengths`; lengths None = all L are lyrics).
    total_length, offset, duration: scalars or [B]. Returns (ids, indices), int32
    [n_tokens] or [B, n_tokens].
    """
    tokens = tf.cast(tf.convert_to_tensor(tokens), tf.int32)
    batched = tokens.shape.rank == 2
    if not batched:
        tokens = tokens[None]
    batch, width = tf.shape(tokens)[0], tf.shape(tokens)[1]
    if lengths is None:
        lengths = tf.fill([batch], width)

    def per_row(value):
        return tf.broadcast_to(tf.reshape(tf.cast(value, tf.float64), [-1]), [batch])

    n_full = tf.cast(tf.reshape(lengths, [-1]), tf.int64)
    centre = tf.floor(tf.cast(n_full, tf.float64)
                      * (per_row(offset) + per_row(duration) / 2.0)
                      / tf.maximum(per_row(total_length), 1.0))
    start = tf.minimum(tf.maximum(tf.cast(centre, tf.int64) - n_tokens // 2, 0),
                       n_full - n_tokens)
    indices = start[:, None] + tf.range(n_tokens, dtype=tf.int64)[None]
    valid = indices >= 0
    # A trailing zero column keeps the gather in range when a batch has no lyrics at all.
    padded = tf.pad(tokens, [[0, 0], [0, 1]])
    ids = tf.gather(padded, tf.maximum(indices, 0), batch_dims=1)
    ids = tf.where(valid, ids, PAD)
    indices = tf.cast(tf.where(valid, indices, -1), tf.int32)
    return (ids, indices) if batched else (ids[0], indices[0])


def pad_tokens(token_lists: Sequence[Sequence[int]]) -> tuple[np.ndarray, np.ndarray]:
    """Batches token lists for `lyric_window_tf`: (tokens int32 [B, L_max], lengths int32 [B])."""
    lengths = np.array([len(t) for t in token_lists], np.int32)
    out = np.zeros((len(token_lists), max(1, int(lengths.max(initial=0)))), np.int32)
    for row, toks in zip(out, token_lists):
        row[:len(toks)] = toks
    return out, lengths
