"""A request's conditioning, in graph: artist and genre names -> the prior's label ids,
label rows as labels.make_labels lays them out, lyrics -> the prior's character tokens, and
seconds -> audio samples for the timing labels (export/README.md, "Conditioning, in graph")."""

from __future__ import annotations

import tensorflow as tf

from jukebox_tf.prior.label_vocab import LabelVocab, artist_key_tf, genre_keys_tf
from jukebox_tf.prior.lyrics import tokenizer_for
from jukebox_tf.sampling import prior_api


def lookup_table(keys: dict[str, int]) -> tf.lookup.StaticHashTable:
    """A name's key (label_vocab) -> its id; -1 when absent."""
    return tf.lookup.StaticHashTable(
        tf.lookup.KeyValueTensorInitializer(tf.constant(list(keys) or [""], tf.string),
                                            tf.constant(list(keys.values()) or [0], tf.int32)),
        default_value=-1)


def label_ids(table, vocab_size: int, key) -> tf.Tensor:
    """Keys (label_vocab) -> ids: the vocabulary's, else a decimal id below vocab_size,
    else 0 (unknown)."""
    found = table.lookup(key)
    digits = tf.strings.regex_full_match(key, "[0-9]{1,9}")
    number = tf.strings.to_number(tf.where(digits, key, "0"), tf.int32)
    number = tf.where(digits & (number < vocab_size), number, 0)
    return tf.where(found >= 0, found, number)


def genre_ids(genres, max_words: int, vocab: LabelVocab, table) -> tf.Tensor:
    """Genre text [B] -> int32 [B, max_words]: its keys as label_vocab makes them (for
    runs trained here, words split as ingest splits them), looked up in `vocab`'s `table`;
    no key -> [0] (unknown); empty slots -1 (labels.make_labels)."""
    words = genre_keys_tf(genres, vocab.scheme)
    ids = tf.ragged.map_flat_values(lambda w: label_ids(table, len(vocab.genres), w), words)
    ids = ids[:, :max_words]
    batch = tf.shape(genres)[0]
    dense = ids.to_tensor(default_value=-1, shape=tf.stack([batch, max_words]))
    empty = (ids.row_lengths() == 0)[:, None] & (tf.range(max_words) == 0)[None]
    return tf.where(empty, 0, dense)


def label_rows(artist, genres, total_samples, offset_samples, vocab: LabelVocab,
               artist_table, genre_table, max_words: int) -> tf.Tensor:
    """labels.make_labels rows int32 [B, 4 + max_words] with length 0 (set per window), the
    names looked up in `vocab`'s tables; total_samples, offset_samples int32 [B]."""
    batch = tf.shape(artist)[0]
    artist_ids = label_ids(artist_table, len(vocab.artists), artist_key_tf(artist, vocab.scheme))
    head = tf.stack([total_samples, offset_samples, tf.zeros([batch], tf.int32),
                     artist_ids], axis=1)
    return tf.concat([head, genre_ids(genres, max_words, vocab, genre_table)], axis=1)


def tokenize_lyrics(lyrics, prior):
    """The prior's character tokens of lyrics string [B]: (int32 [B, L], lengths [B])."""
    tokenize = tokenizer_for(prior_api.lyric_vocab_size(prior)).tokenize_tf
    tokens = tf.map_fn(tokenize, lyrics, fn_output_signature=tf.RaggedTensorSpec(
        [None], tf.int32, ragged_rank=0))
    return tokens.to_tensor(), tf.cast(tokens.row_lengths(), tf.int32)


def to_samples(seconds, sample_rate: int) -> tf.Tensor:
    """Seconds (float32) -> whole audio samples, int32 (as int(seconds * rate))."""
    rate = float(sample_rate)
    return tf.cast(tf.floor(tf.cast(seconds, tf.float64) * rate), tf.int32)


def total_samples_or(total_seconds, default, sample_rate: int) -> tf.Tensor:
    """int32 [B]: each row's total_seconds in samples, or `default` where it is <= 0 (the
    sampled length, plus the offset)."""
    return tf.where(total_seconds > 0.0, to_samples(total_seconds, sample_rate), default)
