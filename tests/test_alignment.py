"""The lyric alignment: the attention weights read are those the layer uses, the windows are
stitched as the original's get_alignment stitches them, and `sample` draws and writes it."""

import json
from types import SimpleNamespace

import numpy as np
import pytest
import tensorflow as tf

from jukebox_tf.prior import prior as prior_lib
from jukebox_tf.prior.config import get_preset, with_lyric_prefix, with_lyrics
from jukebox_tf.prior.labels import OFFSET, make_labels
from jukebox_tf.prior.lyrics import lyric_window
from jukebox_tf.sampling.alignment import alignment_json, lyric_alignment
from jukebox_tf.sampling.windowed import get_starts

HOPS = (8, 32, 128)


def randomized(config):
    prior = prior_lib.build_prior(config)
    rng = np.random.default_rng(0)
    for v in prior.weights:
        v.assign(rng.normal(0.0, 0.2, v.shape).astype(np.float32))
    return prior


def window_inputs(prior, rng):
    config = prior.config
    labels = np.stack([make_labels(22050 * 4, 0, config.n_ctx * 128, a, [1],
                                   config.max_genre_words) for a in (1, 2)])
    return {"codes": rng.integers(0, config.l_bins, (2, config.n_ctx)).astype(np.int32),
            "labels": labels,
            "lyrics": rng.integers(1, config.n_vocab, (2, config.n_lyric_tokens)).astype(
                np.int32)}


BASE = dict(l_bins=32, labels=True, artist_bins=8, genre_bins=8, sample_rate=22050,
            max_duration=10.0)
LAYOUTS = {
    "encoder": lambda: with_lyrics(get_preset("tiny", depth=3, **BASE), n_tokens=16),
    "prefix": lambda: with_lyric_prefix(get_preset("tiny", depth=4, **BASE), n_tokens=16,
                                        n_vocab=79, attn_order=(1, 2, 7, 0)),
}


@pytest.mark.parametrize("layout", LAYOUTS)
def test_the_weights_read_are_the_ones_the_layer_attends_with(layout):
    """Weights x values, through the output projection, give the layer's own attention output
    (the transformer's forward pass): so the alignment shows what the model reads."""
    prior = randomized(LAYOUTS[layout]())
    config = prior.config
    layer, head = config.lyric_alignment
    assert config.attn_kinds[layer] == (6 if layout == "encoder" else 7)
    inputs = window_inputs(prior, np.random.default_rng(1))
    cond, _ = prior._conditioning(inputs, False)
    x, encoder_kv, skip = prior._alignment_input(tf.constant(inputs["codes"]), cond)
    blocks = prior.transformer.res_blocks
    for block in blocks[:layer]:
        x = block(x, encoder_kv=encoder_kv if block.attn_kind == 6 else None)
    attn = blocks[layer].attn
    normed = blocks[layer].ln_0(x)
    weights = prior.transformer.attention_weights(
        prior._alignment_input(tf.constant(inputs["codes"]), cond)[0], layer, encoder_kv)
    h = attn.c_attn(normed)
    if layout == "encoder":
        value = attn._split_heads(tf.split(attn.c_enc_kv(encoder_kv), 2, axis=-1)[1])
    else:
        value = attn._split_heads(tf.split(h, 3, axis=-1)[2])[:, :attn.prime_attn_len]
    mixed = tf.einsum("bhqk,bkhd->bqhd", weights, value)
    expected = attn.c_proj(tf.reshape(mixed, [2, -1, attn.n_state]))
    np.testing.assert_allclose(expected, attn(normed, encoder_kv=encoder_kv), atol=1e-5)
    rows = prior.lyric_attention(inputs).numpy()
    assert rows.shape == (2, config.n_ctx, config.n_lyric_tokens)
    np.testing.assert_array_equal(rows, weights[:, head, skip:, :config.n_lyric_tokens])
    sums = rows.sum(-1)
    if layout == "encoder":  # all the keys are the lyrics
        np.testing.assert_allclose(sums, 1.0, atol=1e-5)
    else:  # the prime keys run past the lyrics to whole blocks: rows sum to at most 1
        assert (sums <= 1.0 + 1e-5).all() and sums.min() > 0.0


class MarkedPrior:
    """Its 'attention' at window position t to window character j is 1000 * (the absolute
    token t stands at) + the character's index + 1 in the whole lyrics: each value says where
    it must land."""

    def __init__(self, n_ctx=16, n_lyric_tokens=6, hop_length=128):
        self.config = SimpleNamespace(n_ctx=n_ctx, level=2, n_lyric_tokens=n_lyric_tokens,
                                      max_genre_words=1)
        self.hop_length = hop_length

    def lyric_attention(self, inputs):
        first = np.asarray(inputs["labels"])[:, OFFSET] // self.hop_length
        t = first[:, None] + np.arange(self.config.n_ctx)[None]
        index = self.indices[tuple(first)]
        return tf.constant(1000.0 * t[:, :, None] + (index + 1)[:, None, :], tf.float32)


def reference_alignment(prior, total, tokens, total_length, hop_fraction):
    """The original's get_alignment walk over windows, per sample, in numpy."""
    ctx, n = prior.config.n_ctx, prior.config.n_lyric_tokens
    padded = max(total, ctx)
    out = np.zeros([padded, len(tokens) + 1])
    starts = get_starts(padded, ctx, int(hop_fraction * ctx)) if padded > ctx else [0]
    for start in reversed(starts):
        _, indices = lyric_window(tokens, total_length, start * 128, ctx * 128, n)
        w = 1000.0 * np.arange(start, start + ctx)[:, None] + (indices + 1)[None, :]
        out[start:start + ctx, indices] = w
    return out[:total, :len(tokens)]


@pytest.mark.parametrize("total", [10, 16, 40, 57])
def test_windows_are_stitched_as_the_original_stitches_them(total):
    prior = MarkedPrior()
    tokens = [np.arange(1, 31), np.arange(1, 5)]  # one longer than a window, one shorter
    lengths = np.array([30, 4], np.int32)
    padded = np.zeros([2, 30], np.int32)
    for i, t in enumerate(tokens):
        padded[i, :len(t)] = t
    total_length = total * 128
    labels = np.stack([make_labels(total_length, 0, 0, 0, [0], 1)] * 2)
    # The windows' character indices, as lyric_alignment's own lyric_window_tf computes them.
    prior.indices = {}
    ctx = prior.config.n_ctx
    for start in (get_starts(max(total, ctx), ctx, 2) if total > ctx else [0]):
        prior.indices[(start, start)] = np.stack([
            lyric_window(t, total_length, start * 128, ctx * 128, 6)[1] for t in tokens])
    got = lyric_alignment(prior, np.zeros([2, total], np.int32), HOPS, labels=labels,
                          lyrics=(padded, lengths), hop_fraction=0.125)
    for i, t in enumerate(tokens):
        assert got[i].shape == (total, len(t))
        np.testing.assert_array_equal(got[i], reference_alignment(prior, total, t,
                                                                  total_length, 0.125))


def test_the_json_keeps_shape_and_peaks():
    weights = np.zeros([3000, 7], np.float32)
    weights[:1500, 6], weights[1500:, 2] = 0.5, 0.25
    data = json.loads(alignment_json([weights], ["abcdefg"], 128 / 44100, 63, 0))
    assert (data["layer"], data["head"]) == (63, 0)
    [sample] = data["samples"]
    assert sample["characters"] == "abcdefg" and sample["weights_max"] == 0.5
    rows = sample["weights_uint8"]
    assert len(rows) == 1000 and len(rows[0]) == 7  # 3 rows pooled into one
    assert sample["seconds_per_row"] == pytest.approx(3 * 128 / 44100)
    assert rows[0][6] == 255 and rows[-1][2] == 128 and rows[-1][6] == 0
    assert sample["peak_character"][0] == 6 and sample["peak_character"][-1] == 2


def test_the_alignment_layer_of_each_model():
    import dataclasses

    from jukebox_tf.prior.config import PRESETS

    assert PRESETS["paper_1b_lyrics"].lyric_alignment == (63, 0)
    assert PRESETS["paper_top_lyrics"].lyric_alignment == (68, 2)
    # Without the released choice, the 1B model's last prime-attention layer: the same one.
    auto = dataclasses.replace(PRESETS["paper_1b_lyrics"], alignment_layer=None)
    assert auto.lyric_alignment == (63, 0)
    assert PRESETS["paper_top"].lyric_alignment is None  # no lyrics
    with pytest.raises(ValueError, match="alignment_layer 64 is not a layer that reads"):
        dataclasses.replace(PRESETS["paper_1b_lyrics"], alignment_layer=64)
    with pytest.raises(ValueError, match="alignment_head 2 is not one of the 2 heads"):
        dataclasses.replace(PRESETS["paper_1b_lyrics"], alignment_head=2)
