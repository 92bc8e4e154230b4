"""Prior conditioning: the lyrics tokenizer and window, the label and upsampler conditioners."""

import numpy as np
import pytest
import keras
import tensorflow as tf

from jukebox_tf.prior import lyrics
from jukebox_tf.prior.labels import (LabelConditioner, RangeEmbedding, make_labels,
                                     make_labels_tf, time_ranges,
                                     count_label_conditioner_params)
from jukebox_tf.prior.upsampler_conditioner import (UpsamplerConditioner,
                                                    count_upsampler_conditioner_params)
from jukebox_tf.layers.conv_blocks import DecoderConvBlock


# --- tokenizer ---------------------------------------------------------------------------------

def test_vocabularies_match_the_original_sizes_and_ids():
    assert lyrics.VOCAB_SIZE == 80
    assert lyrics.encode("A") == [1] and lyrics.encode("\n") == [79]
    v3 = lyrics.LyricsTokenizer(lyrics.VOCAB_V3)
    assert v3.vocab_size == 79 and v3.encode("a+b") == v3.encode("ab")


def test_round_trip_and_transliteration():
    text = "Hello, World! (it's 9:30) [x] \"q\"; -+?\n\tend"
    ids = lyrics.encode(text)
    assert lyrics.decode(ids) == text and 0 not in ids
    assert max(ids) < lyrics.VOCAB_SIZE
    assert lyrics.decode(lyrics.encode("Beyoncé, Ωμέγα, Straße")) == "Beyonce, Omega, Strasse"
    assert lyrics.decode(lyrics.encode("東京")).strip() == "Dong Jing"
    assert lyrics.decode(lyrics.encode("a\\b @#~c")) == "a\nb c"  # '\' is a line break
    assert lyrics.decode([0, 8, 0, 9, 999]) == "HI"


def test_tf_tokenizer_matches_for_ascii_and_runs_in_tf_data():
    texts = ["Hello, World!\\x", "a@b~c{d}", "", "naïve"]
    ds = tf.data.Dataset.from_tensor_slices(texts).map(lyrics.tokenize_tf)
    got = [list(t.numpy()) for t in ds]
    assert got[:3] == [lyrics.encode(t) for t in texts[:3]]
    assert got[3] == lyrics.encode("nave")  # non-ASCII is dropped in graph: store cleaned text


# --- lyric window ------------------------------------------------------------------------------

def original_window(full, n_tokens, total_length, offset, duration):
    """The original's linear alignment, restated (even n_tokens, offset inside the track)."""
    if len(full) < n_tokens:
        pad = n_tokens - len(full)
        return [0] * pad + list(full), [-1] * pad + list(range(len(full)))
    mid = int(len(full) * (offset + duration / 2.0) / total_length)
    mid = min(max(mid, n_tokens // 2), len(full) - n_tokens // 2)
    idx = list(range(mid - n_tokens // 2, mid + n_tokens // 2))
    return [full[i] for i in idx], idx


@pytest.mark.parametrize("offset, first", [(0, 0), (500, 50), (900, 90), (1000, 90),
                                           (220, 22)])
def test_window_hand_cases(offset, first):
    # 100 tokens over 1000 samples, windows of 100 samples: the centre token is
    # floor(100 * (offset + 50) / 1000), clamped so 10 tokens fit.
    full = np.arange(100, 200)
    ids, idx = lyrics.lyric_window(full, 1000, offset, 100, 10)
    assert list(idx) == list(range(first, first + 10))
    assert list(ids) == list(full[first:first + 10])


def test_short_and_empty_lyrics_are_left_padded():
    ids, idx = lyrics.lyric_window([5, 6, 7], 1000, 300, 100, 6)
    assert list(ids) == [0, 0, 0, 5, 6, 7] and list(idx) == [-1, -1, -1, 0, 1, 2]
    ids, idx = lyrics.lyric_window([], 1000, 300, 100, 4)
    assert list(ids) == [0] * 4 and list(idx) == [-1] * 4
    ids, idx = lyrics.lyric_window([1, 2, 3, 4], 1000, 999, 100, 4)
    assert list(ids) == [1, 2, 3, 4]


def random_cases(n=60, seed=0):
    rng = np.random.RandomState(seed)
    for _ in range(n):
        total = int(rng.randint(1, 10_000_000))
        yield (list(rng.randint(1, 80, rng.randint(0, 300))), total, int(rng.randint(0, total)),
               int(rng.randint(1, 3_000_000)), int(rng.choice([2, 8, 64])))


def test_numpy_window_matches_the_original_and_tf_matches_numpy():
    tf_window = tf.function(lyrics.lyric_window_tf, reduce_retracing=True)
    cases = list(random_cases())
    for full, total, offset, duration, n in cases:
        ids, idx = lyrics.lyric_window(full, total, offset, duration, n)
        want_ids, want_idx = original_window(full, n, total, offset, duration)
        assert list(ids) == want_ids and list(idx) == want_idx
        tf_ids, tf_idx = tf_window(tf.constant(full, tf.int32), total, offset, duration, n)
        np.testing.assert_array_equal(tf_ids, ids)
        np.testing.assert_array_equal(tf_idx, idx)
    # Batched: padded rows with lengths, one row without lyrics.
    batch = [c for c in cases if c[4] == 8][:5] + [([], 1000, 10, 100, 8)]
    tokens, lengths = lyrics.pad_tokens([c[0] for c in batch])
    cols = [np.array([c[i] for c in batch], np.int64) for i in (1, 2, 3)]
    ids, idx = lyrics.lyric_window_tf(tokens, *cols, 8, lengths=lengths)
    for row, (full, total, offset, duration, n) in enumerate(batch):
        want_ids, want_idx = lyrics.lyric_window(full, total, offset, duration, n)
        np.testing.assert_array_equal(ids[row], want_ids)
        np.testing.assert_array_equal(idx[row], want_idx)


# --- label conditioner -------------------------------------------------------------------------

SR = 1000
RANGES = time_ranges(SR, 10, 100)  # songs of 10 s .. 100 s


def tiny_labels(**kwargs):
    args = dict(artist_bins=7, genre_bins=5, out_width=8, max_genre_words=3, n_time=16,
                t_bins=12, t_ranges=RANGES)
    layer = LabelConditioner(**(args | kwargs))
    layer.build((None, 4 + layer.max_genre_words))
    return layer


def y_of(total=60_000, offset=12_000, length=4_000, artist=2, genres=(1, -1, -1)):
    return make_labels(total, offset, length, artist, genres, 3)[None]


def test_start_embedding_is_artist_plus_bag_of_genres():
    layer = tiny_labels()
    start = lambda **kw: layer(y_of(**kw))[0].numpy()  # noqa: E731
    a, g = layer.artist_emb.numpy(), layer.genre_emb.numpy()
    base = start()
    assert base.shape == (1, 1, 8)
    np.testing.assert_allclose(base[0, 0], a[2] + g[1], rtol=1e-6)
    assert not np.allclose(base, start(artist=3))
    assert not np.allclose(base, start(genres=(2, -1, -1)))
    np.testing.assert_array_equal(base, start(genres=(-1, 1, -7)))  # empty slots ignored
    np.testing.assert_allclose(start(genres=(1, 4, -1)), start(genres=(4, -1, 1)), rtol=1e-6)
    assert not np.allclose(base, start(genres=(1, 0, -1)))  # unknown (0) is a real word
    np.testing.assert_array_equal(start(artist=99), start(artist=0))  # out of vocabulary
    np.testing.assert_array_equal(base, start(offset=30_000, total=90_000))  # timing apart


def numpy_timing(layer, y):
    """pos_emb recomputed in numpy: float32 bins of total length, absolute, relative position."""
    (t_lo, t_hi), (a_lo, a_hi), (r_lo, r_hi) = layer.t_ranges
    total, offset, length = (y[:, i:i + 1].astype(np.float32) for i in range(3))
    end = offset + length
    steps = np.arange(layer.n_time, dtype=np.float32)[None] / np.float32(layer.n_time)

    def lookup(emb, pos, lo, hi):
        bins = np.floor(np.float32(layer.t_bins) * ((pos - np.float32(lo))
                                                    / np.float32(hi - lo)))
        return emb.embeddings.numpy()[np.clip(bins.astype(int), 0, layer.t_bins - 1)]

    rel_start, rel_end = offset / total, np.clip(end / total, r_lo, r_hi)
    return (lookup(layer.total_length_emb, total, t_lo, t_hi)
            + lookup(layer.absolute_pos_emb, offset + (end - offset) * steps, a_lo, a_hi)
            + lookup(layer.relative_pos_emb, rel_start + (rel_end - rel_start) * steps,
                     r_lo, r_hi))


def test_timing_embedding_matches_numpy_bins():
    layer = tiny_labels()
    call = tf.function(layer)
    ys = [y_of(), y_of(offset=0, total=10_000, length=4_000),
          y_of(offset=58_000, length=4_000),  # runs past the song's end: relative clamped
          y_of(total=99_999, offset=77_777, length=13_333)]
    pos = [call(y)[1].numpy() for y in ys]
    assert pos[0].shape == (1, 16, 8)
    assert not np.allclose(pos[0], pos[1])
    for y, p in zip(ys, pos):
        np.testing.assert_allclose(p, numpy_timing(layer, y), rtol=1e-6, atol=1e-7)
    # Bins by hand: offset 12 s + 4 s window in a 60 s song, 12 bins over [0, 100 s):
    # absolute positions 12..15.75 s -> bin 1; relative 0.2 + i / 240 -> bin 3 from 0.25 on.
    bins = layer.relative_pos_emb.bin_indices(np.float32([[0.2]]), np.float32([[16 / 60]]))
    assert list(bins.numpy()[0]) == [2] * 12 + [3] * 4
    np.testing.assert_array_equal(
        layer.absolute_pos_emb.bin_indices(np.float32([[12_000]]), np.float32([[16_000]])), 1)


def test_timing_off_gives_none_and_labels_from_tf_data():
    layer = tiny_labels(include_time_signal=False, t_ranges=None)
    start, pos = layer(y_of())
    assert pos is None and start.shape == (1, 1, 8)
    assert layer.compute_output_shape((4, 7)) == ((4, 1, 8), None)
    assert layer.count_params() == count_label_conditioner_params(7, 5, 8, False)
    with pytest.raises(ValueError):
        LabelConditioner(7, 5, 8, 3, include_time_signal=True)
    ds = tf.data.Dataset.from_tensors({"genre_ids": tf.constant([1, 2, 3, 4], tf.int64)}).map(
        lambda f: make_labels_tf(tf.constant(60_000, tf.int64), 5, 6, 2, f["genre_ids"], 3))
    np.testing.assert_array_equal(next(iter(ds)), make_labels(60_000, 5, 6, 2, [1, 2, 3, 4], 3))
    np.testing.assert_array_equal(make_labels_tf(1, 2, 3, 4, tf.constant([5]), 3),
                                  [1, 2, 3, 4, 5, -1, -1])


def test_mixed_precision_keeps_positions_in_float32():
    previous = keras.mixed_precision.dtype_policy()
    keras.mixed_precision.set_dtype_policy("mixed_float16")  # as the training loop does
    try:
        layer = tiny_labels(t_ranges=time_ranges(44100, 60, 600))
        y = y_of(total=26_000_000, offset=13_000_123, length=300_000)
        start, pos = layer(y)
        up = tiny_upsampler()
        out = up(np.zeros((1, 4), np.int32))
    finally:
        keras.mixed_precision.set_dtype_policy(previous)
    assert start.dtype == pos.dtype == out.dtype == tf.float16
    assert layer.artist_emb.dtype == up.x_emb.dtype == "float32"
    np.testing.assert_allclose(pos, numpy_timing(layer, y), rtol=1e-3, atol=1e-4)


# --- upsampler conditioner ---------------------------------------------------------------------

def tiny_upsampler(**kwargs):
    args = dict(bins=16, out_width=8, width=6, depth=3, dilation_cycle=2)
    layer = UpsamplerConditioner(**(args | kwargs))
    layer.build((None, None))
    return layer


def test_upsampler_shapes_and_locality():
    layer = tiny_upsampler(dilation_growth_rate=1, depth=1)
    codes = np.random.RandomState(0).randint(0, 16, (2, 16)).astype(np.int32)
    out = layer(codes).numpy()
    assert out.shape == (2, 64, 8) and layer.compute_output_shape((2, 16)) == (2, 64, 8)
    np.testing.assert_allclose(out.mean(-1), 0, atol=1e-5)  # layer-normed features
    changed = codes.copy()
    changed[:, 0] = (codes[:, 0] + 1) % 16
    diff = np.abs(layer(changed).numpy() - out).max(axis=(0, 2))
    # Code 0 covers output steps 0..3; three k=3 convs and two k=4/s=2 upsamplings spread it
    # a few steps further, never to the far end.
    assert diff[:4].min() > 0 and diff[24:].max() == 0
    x8 = tiny_upsampler(down_t=3)
    assert x8(codes[:, :5]).shape == (2, 40, 8)
    x_cond = np.ones((2, 16, 8), np.float32)
    assert not np.allclose(layer(codes, x_cond), out)


def test_upsampler_dilations_and_res_scale_follow_the_original():
    resnet = tiny_upsampler(depth=4).block.stages[1]
    assert resnet.dilations == [1, 3, 1, 3]  # 3**(i % cycle), not reversed
    assert {b.res_scale for b in resnet.blocks} == {1.0}
    scaled = tiny_upsampler(depth=4, res_scale=True).block.stages[1]
    assert {b.res_scale for b in scaled.blocks} == {0.5}
    vq_block = DecoderConvBlock(4, 1, width=6, depth=3)
    assert vq_block.stages[1].dilations == [9, 3, 1]  # the VQ-VAE keeps its reversed default


# --- serialization -----------------------------------------------------------------------------

def round_trip(layer, build_shape, *inputs):
    clone = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(layer))
    assert type(clone) is type(layer) and clone.get_config() == layer.get_config()
    if not clone.built:
        clone.build(build_shape)
    clone.set_weights(layer.get_weights())
    for a, b in zip(tf.nest.flatten(layer(*inputs)), tf.nest.flatten(clone(*inputs))):
        np.testing.assert_array_equal(a, b)


def test_get_config_round_trips():
    round_trip(tiny_labels(), (None, 7), y_of())
    round_trip(tiny_labels(include_time_signal=False, t_ranges=None), (None, 7), y_of())
    round_trip(tiny_upsampler(res_scale=True), (None, None), np.arange(10)[None] % 16)
    emb = RangeEmbedding(4, 10, (0, 1), 3, clamp=True)
    emb.build((None, 1))
    round_trip(emb, (None, 1), np.float32([[0.25]]), np.float32([[1.5]]))
    block = DecoderConvBlock(4, 1, width=6, depth=2, res_scale=True, reverse_dilation=False)
    block.build((None, None, 3))
    round_trip(block, (None, None, 3), np.ones((1, 5, 3), np.float32))


# --- parameter counts --------------------------------------------------------------------------

@pytest.mark.parametrize("kwargs", [{}, dict(down_t=1, m_conv=2.0), dict(down_t=3, stride_t=3)])
def test_upsampler_param_count_formula(kwargs):
    layer = tiny_upsampler(**kwargs)
    assert layer.count_params() == count_upsampler_conditioner_params(
        16, 8, **kwargs, width=6, depth=3)


def test_label_param_count_formula():
    assert tiny_labels().count_params() == count_label_conditioner_params(7, 5, 8, True, 12)


def test_paper_conditioner_sizes():
    # upsamplers: l_bins 2048, prior_width 1920, cond_width 1024, cond_depth 16, x4 = 2 x s2.
    cond = count_upsampler_conditioner_params(2048, 1920, 2, 2, 1024, 16)
    assert cond == 156_180_096
    # their label conditioners: y_bins (genre 120, artist 4111), no timing.
    labels = count_label_conditioner_params(4111, 120, 1920, include_time_signal=False)
    assert labels == 8_123_520
    # The rest of a paper upsampler (the original's transformer formulas): 72 blocks of
    # attention (qkv to 3 x 0.25 width, projection back), MLP (1.0 width), two LayerNorms;
    # token embedding (tied output) and learned positions over n_ctx 8192.
    w, a = 1920, 480
    block = (w * 3 * a + 3 * a) + (a * w + w) + 2 * (w * w + w) + 4 * w
    prior = 72 * block + 2048 * w + 8192 * w
    assert prior + cond + labels == 981_298_176  # REFERENCE's per-upsampler size
    # Top priors' label conditioners (with timing): 5B (t_bins 128) and 1B lyrics (64, v3).
    assert count_label_conditioner_params(4111, 120, 4800, True, 128) == 22_152_000
    assert count_label_conditioner_params(7898, 604, 2048, True, 64) == 17_805_312
