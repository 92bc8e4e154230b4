"""The priors as models: parameter counts, cached steps against the full forward pass,
conditioning, loss, serialization, and a tiny prior that learns a pattern and samples it."""

import dataclasses
import math

import keras
import numpy as np
import pytest
import tensorflow as tf

from jukebox_tf.prior.config import (PRESETS, PriorConfig, count_prior_params,
                                     count_transformer_params, get_preset, with_lyrics)
from jukebox_tf.prior.labels import make_labels
from jukebox_tf.prior.prior import (LyricPrefixPrior, Prior, TopLevelPrior, Upsampler,
                                   _bits_and_hits, build_prior, prior_class, shift_right)

LABELS = dict(labels=True, artist_bins=6, genre_bins=5, max_genre_words=2, t_bins=16,
              sample_rate=1000, max_duration=60.0)
TOP = with_lyrics(dataclasses.replace(PRESETS["tiny"], **LABELS))  # labels, timing, lyrics
UPSAMPLER = dataclasses.replace(PRESETS["tiny_upsampler"], **LABELS)
HOP = 128  # audio samples per token in the label offsets below


def randomize(model, seed=0, std=0.15):
    """Weights far from their (near-zero) initialisation, so every input matters in logits."""
    rng = np.random.default_rng(seed)
    for v in model.weights:
        v.assign(rng.normal(0.0, std, v.shape).astype(np.float32))
    return model


def make_model(config, seed=0):
    return randomize(build_prior(config), seed)


def make_inputs(config, batch=2, seed=0):
    rng = np.random.default_rng(seed)
    inputs = {"codes": rng.integers(0, config.l_bins, (batch, config.n_ctx)).astype(np.int32)}
    if config.labels:
        inputs["labels"] = np.stack([
            make_labels(40_000, 3_000 * (i + 1), config.n_ctx * HOP, i + 1, [i % 3, 4],
                        config.max_genre_words) for i in range(batch)])
    if config.lyrics:
        inputs["lyrics"] = rng.integers(0, config.n_vocab,
                                        (batch, config.n_lyric_tokens)).astype(np.int32)
    if config.is_upsampler:
        inputs["upper_codes"] = rng.integers(
            0, config.l_bins, (batch, config.n_ctx // config.hop_ratio)).astype(np.int32)
    return inputs


def logits_of(model, inputs):
    return model(inputs)["logits"].numpy()


# -- parameter counts -------------------------------------------------------------------------

def test_small_prior_parameter_count():
    config = get_preset("small")
    assert count_transformer_params(config) == 794_368
    assert count_prior_params(config) == 1_449_984  # no conditioning: start token, tied output
    assert build_prior(config).count_params() == 1_449_984


@pytest.mark.parametrize("name, expected", [
    ("paper_top", 5_060_452_800), ("paper_top_lyrics", 5_640_506_800),
    ("paper_1b_lyrics", 942_643_200), ("paper_upsampler", 981_298_176),
    ("paper_upsampler_level_1", 981_298_176)])
def test_paper_parameter_counts(name, expected):
    assert count_prior_params(PRESETS[name]) == expected


@pytest.mark.parametrize("config", [
    TOP, UPSAMPLER, PRESETS["tiny"], PRESETS["tiny_upsampler"],
    dataclasses.replace(TOP, merged_decoder=True, timing=False, lyric_depth=3),
    dataclasses.replace(UPSAMPLER, cond_down_t=1, cond_stride_t=4, cond_m_conv=2.0)],
    ids=["top", "upsampler", "plain", "plain-upsampler", "merged", "upsampler-x4"])
def test_count_matches_built_models(config):
    assert build_prior(config).count_params() == count_prior_params(config)


def test_presets_and_classes():
    assert isinstance(build_prior(PRESETS["tiny"]), TopLevelPrior)
    assert isinstance(build_prior(PRESETS["tiny_upsampler"]), Upsampler)
    assert PRESETS["small_upsampler"].hop_ratio == 4 and PRESETS["small_upsampler"].level == 1
    assert with_lyrics(PRESETS["small"]).attn_kinds == (1, 2, 3, 6)
    assert with_lyrics(PRESETS["paper_top"], 512).attn_order == 8
    with pytest.raises(ValueError, match="Upsampler"):
        TopLevelPrior(PRESETS["tiny_upsampler"])
    with pytest.raises(ValueError, match="TopLevelPrior"):
        Upsampler(PRESETS["tiny"])
    with pytest.raises(ValueError, match="lyrics"):
        Prior(PriorConfig(attn_order=(1, 6), encoder_dims=4))
    with pytest.raises(ValueError, match="top-level"):
        with_lyrics(PRESETS["tiny_upsampler"])
    assert prior_class(PRESETS["paper_1b_lyrics"]) is LyricPrefixPrior
    with pytest.raises(ValueError, match="LyricPrefixPrior"):
        TopLevelPrior(PRESETS["paper_1b_lyrics"])
    with pytest.raises(ValueError, match="single_enc_dec"):
        Prior(PriorConfig(attn_order=(1, 7), prime_len=8))
    with pytest.raises(ValueError, match="prime_len must be n_lyric_tokens"):
        dataclasses.replace(PRESETS["paper_1b_lyrics"], prime_len=256)


# -- cached sampling steps equal the full forward pass ---------------------------------------

def stepped_logits(model, inputs, chunk):
    """Logits of every position from `step` over chunks of `chunk` tokens, in a tf.while_loop
    (as the sampler runs it)."""
    codes = tf.constant(inputs["codes"])
    batch, n_ctx = codes.shape
    prev = tf.pad(codes[:, :-1], [[0, 0], [1, 0]])
    cond = model.conditioning(inputs)

    @tf.function
    def run(prev, cond):
        cache = model.init_cache(batch, cond)
        out = tf.TensorArray(tf.float32, size=n_ctx // chunk)

        def body(i, cache, out):
            position = i * chunk
            tokens = tf.slice(prev, [0, position], [batch, chunk])  # static chunk length
            logits, cache = model.step(tokens, position, cache, cond)
            return i + 1, cache, out.write(i, logits)

        _, _, out = tf.while_loop(lambda i, *_: i < n_ctx // chunk, body, (0, cache, out))
        return tf.concat(tf.unstack(out.stack()), axis=1)

    return run(prev, cond).numpy()


@pytest.mark.parametrize("config", [TOP, UPSAMPLER], ids=["top-labels-lyrics", "upsampler"])
def test_cached_steps_match_forward(config):
    model = make_model(config)
    inputs = make_inputs(config)
    full = logits_of(model, inputs)
    assert np.abs(full).max() > 1.0  # logits far from uniform: a meaningful comparison
    for chunk in (1, 16):
        np.testing.assert_array_less(np.abs(stepped_logits(model, inputs, chunk) - full), 1e-4)


def chunk_primed(step, prev, length, cache, cond, chunk=16):
    """The cache after step(prev, position, cache, cond) over prev [B, n_ctx]'s positions
    [0, length) as the sampler without a one-pass prime feeds them: whole chunks, then
    single steps."""
    position = 0
    for size in [chunk] * (length // chunk) + [1] * (length % chunk):
        _, cache = step(prev[:, position:position + size], tf.constant(position), cache, cond)
        position += size
    return cache


@pytest.mark.parametrize("config", [TOP, UPSAMPLER], ids=["top-labels-lyrics", "upsampler"])
def test_one_pass_prime_matches_chunked_steps(config):
    """Prior.prime (timing or upper-codes conditioning at every position, cross-attention to
    the lyrics) leaves the cache chunked steps leave, XLA-compiled (over the whole window) or
    not (over the blocks that hold the prime), and the next steps' logits agree."""
    model, inputs = make_model(config), make_inputs(config)
    cond = model.conditioning(inputs)
    prev = shift_right(inputs["codes"])
    # Positions from the prime's length on hold other codes: the prime never reads them.
    other = np.random.default_rng(5).integers(0, config.l_bins, prev.shape).astype(np.int32)
    empty = model.init_cache(2, cond)
    primes = [tf.function(model.prime), tf.function(model.prime, jit_compile=True)]
    step = tf.function(model.step)
    for length in (0, 1, 13, 37, config.n_ctx - 1, config.n_ctx):
        chunked = chunk_primed(step, prev, length, empty, cond)
        padded = np.where(np.arange(config.n_ctx) < length, prev, other)
        for prime in primes:
            primed = prime(padded, tf.constant(length), empty, cond)
            for a, b in zip(tf.nest.flatten(primed), tf.nest.flatten(chunked)):
                assert np.abs(a.numpy() - b.numpy()).max() < 1e-5, length
            caches = [primed, chunked]
            for position in range(length, min(length + 3, config.n_ctx)):
                logits = []
                for i, cache in enumerate(caches):
                    out, caches[i] = step(prev[:, position:position + 1],
                                          tf.constant(position), cache, cond)
                    logits.append(out.numpy())
                assert np.abs(logits[0] - logits[1]).max() < 1e-5, (length, position)
    assert [p.experimental_get_tracing_count() for p in primes] == [1, 1]
    with pytest.raises(ValueError, match="prime length"):
        model.prime(prev, config.n_ctx + 1, empty, cond)


def test_unconditioned_prior_broadcasts_its_start_token():
    model = make_model(PRESETS["tiny"])
    inputs = make_inputs(PRESETS["tiny"], batch=3)
    cond = model.conditioning({})
    assert cond["start"].shape == (1, 1, PRESETS["tiny"].width)
    prev = np.pad(inputs["codes"][:, :7], [[0, 0], [1, 0]])
    logits, cache = model.step(prev, 0, model.init_cache(3, cond), cond)
    np.testing.assert_allclose(logits, logits_of(model, inputs)[:, :8], atol=1e-4)
    assert all(t.shape[0] == 3 for t in tf.nest.flatten(cache))


# -- conditioning -----------------------------------------------------------------------------

def changed(model, inputs, key, edit):
    other = {k: np.copy(v) for k, v in inputs.items()}
    edit(other[key])
    return np.abs(logits_of(model, other) - logits_of(model, inputs)).max()


def test_every_conditioning_input_changes_the_logits():
    from jukebox_tf.prior.labels import ARTIST, GENRES, OFFSET

    top, up = make_model(TOP), make_model(UPSAMPLER)
    top_in, up_in = make_inputs(TOP), make_inputs(UPSAMPLER)
    edits = {
        "artist": (top, top_in, "labels", lambda y: y.__setitem__((0, ARTIST), 3)),
        "genre": (top, top_in, "labels", lambda y: y.__setitem__((0, GENRES), 2)),
        "timing": (top, top_in, "labels", lambda y: y.__setitem__((0, OFFSET), 30_000)),
        "lyrics": (top, top_in, "lyrics", lambda x: x.__setitem__((0, slice(None)), 7)),
        "upper codes": (up, up_in, "upper_codes", lambda x: x.__setitem__((0, 5), x[0, 5] + 1)),
        "upsampler artist": (up, up_in, "labels", lambda y: y.__setitem__((0, ARTIST), 3)),
    }
    for name, (model, inputs, key, edit) in edits.items():
        assert changed(model, inputs, key, edit) > 1e-3, name
    # Unknown ids (outside the vocabulary) are the unknown id 0.
    unknown = changed(top, top_in, "labels", lambda y: y.__setitem__((0, ARTIST), 99))
    zero = {k: np.copy(v) for k, v in top_in.items()}
    zero["labels"][0, ARTIST] = 0
    assert unknown > 1e-3 and changed(top, zero, "labels",
                                      lambda y: y.__setitem__((0, ARTIST), 99)) == 0.0


def test_upper_codes_act_locally():
    model, inputs = make_model(UPSAMPLER), make_inputs(UPSAMPLER)
    base = logits_of(model, inputs)
    inputs["upper_codes"][:, -1] = (inputs["upper_codes"][:, -1] + 1) % UPSAMPLER.l_bins
    diff = np.abs(logits_of(model, inputs) - base).max(axis=(0, 2))
    assert diff[:16].max() == 0.0 and diff[-4:].min() > 0  # within the conv stack's reach


def test_missing_conditioning_is_a_clear_error():
    model = build_prior(TOP)
    inputs = make_inputs(TOP)
    for key in ("labels", "lyrics"):
        with pytest.raises(ValueError, match=key):
            model({k: v for k, v in inputs.items() if k != key})
    with pytest.raises(ValueError, match="upper_codes"):
        build_prior(UPSAMPLER).conditioning({"labels": inputs["labels"]})


# -- loss -------------------------------------------------------------------------------------

def test_loss_in_bits_with_the_lyric_weighting():
    model, inputs = make_model(TOP), make_inputs(TOP)
    out = model(inputs)
    logits = out["logits"].numpy().astype(np.float64)
    log_p = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    codes = inputs["codes"]
    bits = -np.take_along_axis(log_p, codes[..., None], -1).mean() / math.log(2)
    metrics = {k: float(v) for k, v in out["metrics"].items()}
    assert metrics["bits_per_token"] == pytest.approx(bits, rel=1e-5)
    n_lyrics, n_codes = TOP.n_lyric_tokens, TOP.n_ctx
    expected = (0.4 * metrics["lyric_bits_per_token"] * n_lyrics + bits * n_codes) / (
        n_lyrics + n_codes)
    assert float(out["loss"]) == pytest.approx(expected, rel=1e-5)
    assert 0 <= metrics["accuracy"] <= 1


def test_compiled_training_call_without_logits():
    """The train step's call (compiled, return_logits=False) gives the eager call's loss and
    metrics and no logits; with return_logits it keeps the documented outputs."""
    model, inputs = make_model(TOP), make_inputs(TOP)
    eager = model(inputs, training=True)
    compiled = tf.function(lambda x, r: model(x, training=True, return_logits=r))
    lean, full = compiled(inputs, False), compiled(inputs, True)
    assert sorted(lean) == ["loss", "metrics"] and sorted(full) == ["logits", "loss", "metrics"]
    assert len(model.__dict__["_compiled_training_calls"]) == 2  # both ran compiled
    for out in (lean, full):
        assert float(out["loss"]) == pytest.approx(float(eager["loss"]), rel=1e-5)
        for name, value in eager["metrics"].items():
            assert float(out["metrics"][name]) == pytest.approx(float(value), rel=1e-5)
    np.testing.assert_allclose(full["logits"], eager["logits"], atol=1e-5)


def test_bits_and_hits_against_numpy():
    rng = np.random.default_rng(6)
    logits = rng.normal(size=(3, 11, 17)).astype(np.float32) * 3
    labels = rng.integers(0, 17, size=(3, 11)).astype(np.int32)
    labels[0, :4] = logits[0, :4].argmax(-1)  # some hits for sure
    bits, hits = (t.numpy() for t in _bits_and_hits(tf.constant(labels), tf.constant(logits)))
    log_p = logits - np.log(np.exp(logits.astype(np.float64)).sum(-1, keepdims=True))
    np.testing.assert_allclose(bits, -np.take_along_axis(log_p, labels[..., None], -1)[..., 0]
                               / math.log(2), rtol=1e-5)
    np.testing.assert_array_equal(hits, (logits.argmax(-1) == labels).astype(np.float32))
    assert hits.shape == (3, 11) and hits[0, :4].all()


def test_mask_excludes_padding():
    model = make_model(PRESETS["tiny"])
    inputs = make_inputs(PRESETS["tiny"])
    half = PRESETS["tiny"].n_ctx // 2
    mask = np.zeros_like(inputs["codes"], np.float32)
    mask[:, :half] = 1.0
    other = dict(inputs, codes=inputs["codes"].copy())
    other["codes"][:, half:] = 0  # what padding holds
    a, b = model(dict(inputs, mask=mask)), model(dict(other, mask=mask))
    assert float(a["loss"]) == pytest.approx(float(b["loss"]), rel=1e-6)
    assert float(a["loss"]) != pytest.approx(float(model(inputs)["loss"]), rel=1e-4)


# -- serialization ----------------------------------------------------------------------------

@pytest.mark.parametrize("config", [TOP, UPSAMPLER], ids=["top", "upsampler"])
def test_get_config_round_trip(config):
    model = make_model(config)
    clone = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(model))
    assert type(clone) is type(model) and clone.config == config
    clone.build()
    clone.set_weights(model.get_weights())
    inputs = make_inputs(config)
    np.testing.assert_array_equal(logits_of(clone, inputs), logits_of(model, inputs))


def test_mixed_precision_keeps_float32_logits():
    previous = keras.mixed_precision.dtype_policy()
    keras.mixed_precision.set_dtype_policy("mixed_bfloat16")
    try:
        model = build_prior(TOP)
        inputs = make_inputs(TOP)
        out = model(inputs, training=True)
        cond = model.conditioning(inputs)
        logits, _ = model.step(inputs["codes"][:, :1], 0, model.init_cache(2, cond), cond)
    finally:
        keras.mixed_precision.set_dtype_policy(previous)
    assert out["logits"].dtype == tf.float32 and logits.dtype == tf.float32
    assert np.isfinite(float(out["loss"]))
    assert model.transformer.compute_dtype == "bfloat16"


# -- learning ---------------------------------------------------------------------------------

PATTERN = np.array([3, 1, 4, 1, 5, 9, 2, 6, 5, 3, 5, 8])  # period 12; "1" and "5" need context


def pattern_batch(rng, batch, n_ctx):
    phase = rng.integers(0, len(PATTERN), batch)
    index = (phase[:, None] + np.arange(n_ctx)[None]) % len(PATTERN)
    return PATTERN[index].astype(np.int32)


@pytest.mark.slow
def test_tiny_prior_learns_a_pattern_and_continues_it_greedily():
    config = dataclasses.replace(PRESETS["tiny"], l_bins=16)
    keras.utils.set_random_seed(0)
    model = build_prior(config)
    optimizer = keras.optimizers.Adam(3e-3)
    optimizer.build(model.trainable_variables)

    @tf.function
    def train_step(codes):
        with tf.GradientTape() as tape:
            loss = model({"codes": codes}, training=True)["loss"]
        grads = tape.gradient(loss, model.trainable_variables)
        optimizer.apply(grads, model.trainable_variables)
        return loss

    rng = np.random.default_rng(0)
    losses = [float(train_step(pattern_batch(rng, 8, config.n_ctx))) for _ in range(250)]
    assert losses[0] > 3.0 and np.mean(losses[-10:]) < 0.3, losses[::25]  # log2(16) = 4 bits

    # Prime with one period (positions 0..11 after the start token), then argmax one by one.
    codes = pattern_batch(np.random.default_rng(1), 2, config.n_ctx)
    prime = len(PATTERN)
    cond = model.conditioning({})
    cache = model.init_cache(2, cond)
    logits, cache = model.step(np.pad(codes[:, :prime], [[0, 0], [1, 0]]), 0, cache, cond)
    sampled = [tf.argmax(logits[:, -1:], -1, output_type=tf.int32)]  # position `prime`
    for position in range(prime + 1, config.n_ctx):
        logits, cache = model.step(sampled[-1], position, cache, cond)
        sampled.append(tf.argmax(logits, -1, output_type=tf.int32))
    np.testing.assert_array_equal(np.concatenate(sampled, 1), codes[:, prime:])
