"""Sampling: logit filters against a numpy restatement of the original's filter_logits, the
compiled cached window loop against a naive full-forward loop, windowed stitching (no gaps or
overlaps, primes kept, per-window conditioning), and the hierarchy modes continuing the codes
they save (the files `jukebox-tf sample` writes: test_cli_sample.py). Stand-in priors
(tests/sampling_helpers.py) implement the prior contract."""

from dataclasses import replace

import numpy as np
import pytest
import tensorflow as tf

from jukebox_tf.errors import JukeboxError
from jukebox_tf.prior import lyrics as lyrics_lib
from jukebox_tf.prior import prior as prior_lib
from jukebox_tf.prior.config import get_preset as prior_preset, with_lyrics
from jukebox_tf.prior.labels import LENGTH, OFFSET, make_labels
from jukebox_tf.sampling import filters, modes, noise, outputs, prior_api, windowed
from jukebox_tf.sampling.sampler import sample_window
from jukebox_tf.sampling.settings import SamplingSettings
from jukebox_tf.vqvae.config import get_preset
from jukebox_tf.vqvae.vqvae import build_vqvae

from sampling_helpers import CounterPrior, StandInConfig, StandInPrior

V = 32


# --- filters -----------------------------------------------------------------------------------

def reference_filter(logits, top_k=0, top_p=0.0):
    """The original's filter_logits restated in numpy, one row at a time."""
    out = logits.copy()
    for row in out:
        if top_k:
            row[row < np.sort(row)[::-1][min(top_k, len(row)) - 1]] = -np.inf
        if top_p:
            order = np.argsort(-row, kind="stable")
            probs = np.exp(row[order] - row[order].max())
            cumulative = np.cumsum(probs / probs.sum())
            remove = cumulative > top_p
            remove[1:], remove[0] = remove[:-1].copy(), False
            row[order[remove]] = -np.inf
    return out


@pytest.mark.parametrize("top_k, top_p", [(0, 0.0), (1, 0.0), (5, 0.0), (V + 3, 0.0),
                                          (0, 0.5), (0, 0.9), (0, 1e-6), (0, 1.0), (8, 0.7)])
def test_filter_logits_matches_the_original(top_k, top_p):
    logits = np.random.default_rng(top_k + int(100 * top_p)).normal(0, 2, (6, V))
    logits = logits.astype(np.float32)
    got = filters.filter_logits(tf.constant(logits), top_k, top_p).numpy()
    np.testing.assert_array_equal(got, reference_filter(logits, top_k, top_p))
    assert np.isfinite(got).sum(axis=1).min() >= 1  # the most likely token always survives


def test_draws_follow_the_tempered_distribution_and_the_key():
    logits = np.log(np.array([0.5, 0.3, 0.15, 0.05], np.float32))
    batch = np.tile(logits, (20000, 1))
    key = filters.seed_key(7)
    tokens = filters.pick(batch, key, 3, temperature=0.5).numpy()
    tempered = np.exp(2 * logits) / np.exp(2 * logits).sum()
    np.testing.assert_allclose(np.bincount(tokens, minlength=4) / len(tokens), tempered,
                               atol=0.015)
    assert (filters.pick(batch, key, 3, temperature=0.5).numpy() == tokens).all()
    assert (filters.pick(batch, key, 4, temperature=0.5).numpy() != tokens).any()
    assert (filters.pick(batch, filters.seed_key(8), 3, 0.5).numpy() != tokens).any()
    # Under XLA (its own argmax): the same noise, so the same tokens.
    compiled = tf.function(lambda: filters.pick(batch, key, 3, 0.5, xla=True),
                           jit_compile=True)()
    np.testing.assert_array_equal(compiled.numpy(), tokens)
    # Greedy, and top-k 1 at any temperature, is the argmax; top-p keeps the nucleus only.
    assert (filters.pick(batch[:5], key, 0, temperature=0.0).numpy() == 0).all()
    assert (filters.pick(batch[:50], key, 0, 2.0, top_k=1).numpy() == 0).all()
    assert set(filters.pick(batch[:500], key, 0, 1.0, top_p=0.6).numpy()) == {0, 1}


def test_noise_is_uniform_and_the_same_bits_with_and_without_xla():
    key = filters.seed_key(11)
    u = noise.uniform(key, 3, [64, 2048]).numpy()
    compiled = tf.function(lambda p: noise.uniform(key, p, [64, 2048]), jit_compile=True)
    np.testing.assert_array_equal(compiled(tf.constant(3)).numpy(), u)
    assert u.dtype == np.float32 and 0.0 < u.min() and u.max() < 1.0
    counts = np.histogram(u, bins=64, range=(0.0, 1.0))[0]
    expected = u.size / 64
    assert ((counts - expected) ** 2 / expected).sum() < 120  # chi-square, 63 dof: p ~ 1e-5
    # Neighbours in the counter and in the position are uncorrelated.
    nxt = noise.uniform(key, 4, [64, 2048]).numpy()
    assert abs(np.corrcoef(u[:, :-1].ravel(), u[:, 1:].ravel())[0, 1]) < 0.01
    assert abs(np.corrcoef(u.ravel(), nxt.ravel())[0, 1]) < 0.01
    # Per-row keys: row b is what its key gives alone, whatever the batch.
    keys = filters.row_keys([5, 6, 7], 2)
    rows = noise.uniform(keys, 9, [3, 100]).numpy()
    for b in range(3):
        np.testing.assert_array_equal(rows[b], noise.uniform(keys[b], 9, [100]).numpy())
    # Keys: a function of (seed, salts), the same compiled, different for other salts.
    np.testing.assert_array_equal(keys[1].numpy(), filters.seed_key(6, 2).numpy())
    folded = tf.function(lambda k: noise.fold_in(k, 2), jit_compile=True)
    np.testing.assert_array_equal(folded(filters.seed_key(6)).numpy(), keys[1].numpy())
    assert len({tuple(filters.seed_key(6, salt).numpy()) for salt in range(50)}) == 50


# --- one window: cached loop vs naive ------------------------------------------------------------

@pytest.fixture(scope="module")
def stand_in():
    return StandInPrior(StandInConfig(n_ctx=64, blocks=8, l_bins=V, width=32, depth=3))


def labels_for(artists, total=20000, genres=(1,)):
    return np.stack([make_labels(total, 0, 64 * 8, a, genres, 2) for a in artists])


@pytest.fixture(scope="module")
def prime():
    return np.random.default_rng(0).integers(0, V, (2, 23)).astype(np.int32)


@pytest.mark.parametrize("prime_len, settings", [
    (0, dict(temperature=1.0)),
    (23, dict(temperature=0.0, chunk_size=5)),
    (23, dict(temperature=0.9, top_p=0.9, chunk_size=5)),
])
def test_cached_loop_draws_what_a_full_forward_per_token_draws(stand_in, prime, prime_len,
                                                               settings):
    cond = stand_in.conditioning({"labels": labels_for([1, 2])})
    args = (stand_in, cond, prime[:, :prime_len], 20)
    cached = sample_window(*args, seed=3, **settings)
    naive = sample_window(*args, seed=3, naive=True, **settings)
    assert cached.shape == (2, 20) and cached.dtype == np.int32
    np.testing.assert_array_equal(cached, naive)
    if settings["temperature"]:
        assert len(np.unique(cached)) > 3  # really sampling, not stuck on one token


def test_seed_batch_chunking_and_conditioning(stand_in, prime):
    settings = dict(temperature=0.9, top_p=0.9)
    cond = stand_in.conditioning({"labels": labels_for([1, 1])})
    first = sample_window(stand_in, cond, prime, 20, seed=3, chunk_size=5, **settings)
    # Same seed, same tokens (however the prime is chunked); another seed, others.
    for chunk_size in (5, 64):
        again = sample_window(stand_in, cond, prime, 20, seed=3, chunk_size=chunk_size,
                              **settings)
        np.testing.assert_array_equal(again, first)
    assert (sample_window(stand_in, cond, prime, 20, seed=4, chunk_size=5, **settings)
            != first).any()
    # Two samples of one batch draw independently (same labels, same prime).
    same_prime = np.repeat(prime[:1], 2, axis=0)
    both = sample_window(stand_in, cond, same_prime, 20, seed=3, chunk_size=5, **settings)
    assert (both[0] != both[1]).any()
    # Other labels (artist and timing), other tokens from the same seed and prime.
    other = stand_in.conditioning({"labels": labels_for([5, 5], total=600)})
    assert (sample_window(stand_in, other, same_prime, 20, seed=3, chunk_size=5, **settings)
            != both).any()


def test_window_limits(stand_in, prime):
    cond = stand_in.conditioning({"labels": labels_for([1, 2])})
    with pytest.raises(ValueError, match="n_ctx=64"):
        sample_window(stand_in, cond, prime, 64 - 22)
    assert sample_window(stand_in, cond, prime, 0).shape == (2, 0)


def test_xla_compiled_loop_matches_greedy(stand_in, prime):
    cond = stand_in.conditioning({"labels": labels_for([1, 2])})
    args = (stand_in, cond, prime, 12)
    np.testing.assert_array_equal(
        sample_window(*args, temperature=0.0, chunk_size=5, jit_compile=True),
        sample_window(*args, temperature=0.0, chunk_size=5))


@pytest.mark.parametrize("prime_len", [0, 1, 5, 13, 23])
def test_exported_graph_sampler_primes_in_chunks_as_the_library_does(stand_in, prime, prime_len):
    """The graph the SavedModel's `sample` runs, for a prior without one-pass priming (the
    stand-in): whole chunks of 5, then the rest one position at a time, with the batch
    unknown while tracing. Greedy, so its tokens must be the library sampler's."""
    from jukebox_tf.export.graph_sampling import GraphSettings, sample_window_graph

    assert prior_api.one_pass_prime(stand_in) is None
    cond = stand_in.conditioning({"labels": labels_for([1, 2])})
    n_ctx, n_new = stand_in.config.n_ctx, 12
    expected = sample_window(stand_in, cond, prime[:, :prime_len], n_new, temperature=0.0,
                             chunk_size=5)
    tokens = np.zeros([2, n_ctx], np.int32)
    tokens[:, :prime_len] = prime[:, :prime_len]
    greedy = GraphSettings(temperature=tf.zeros([2]), top_k=tf.zeros([2], tf.int32),
                           top_p=tf.zeros([2]), seed=tf.zeros([2], tf.int64))

    @tf.function(input_signature=[tf.TensorSpec([None, n_ctx], tf.int32),
                                  tf.TensorSpec([], tf.int32)])
    def graph(tokens, length):
        return sample_window_graph(stand_in, cond, tokens, length, n_new,
                                   tf.zeros([2, 2], tf.int64), greedy, chunk_size=5)

    out = graph(tokens, prime_len).numpy()
    np.testing.assert_array_equal(out[:, :prime_len], prime[:, :prime_len])
    np.testing.assert_array_equal(out[:, prime_len:prime_len + n_new], expected)
    assert not out[:, prime_len + n_new:].any()


def test_real_top_prior_with_labels_and_lyrics():
    """The contract as prior.py implements it: cached == naive with the same seed."""
    config = with_lyrics(prior_preset("tiny", l_bins=V, labels=True, artist_bins=8,
                                      genre_bins=8, sample_rate=22050, max_duration=10.0),
                         n_tokens=8)
    prior = prior_lib.build_prior(config)
    labels = np.stack([make_labels(22050, 0, 0, a, [1], config.max_genre_words) for a in (1, 2)])
    chars = np.random.default_rng(0).integers(1, 80, (2, 8)).astype(np.int32)
    cond = prior.conditioning({"labels": labels, "lyrics": chars})
    prime = np.random.default_rng(1).integers(0, V, (2, 13)).astype(np.int32)
    args = (prior, cond, prime, 10)
    settings = dict(seed=2, temperature=1.0, top_k=8)
    np.testing.assert_array_equal(sample_window(*args, chunk_size=4, **settings),
                                  sample_window(*args, naive=True, **settings))


class StepRecorder:
    """A prior seen through the sampling contract, recording the lengths `step` is traced with;
    one_pass=False hides its `prime` (the sampler then steps over the prime in chunks)."""

    def __init__(self, prior, one_pass: bool):
        self.prior, self.config, self.step_lengths = prior, prior.config, set()
        self.conditioning, self.init_cache = prior.conditioning, prior.init_cache
        if one_pass:
            self.prime = prior.prime

    def step(self, prev_tokens, position, cache, cond):
        self.step_lengths.add(prev_tokens.shape[1])
        return self.prior.step(prev_tokens, position, cache, cond)


def test_one_pass_prime_samples_what_chunked_priming_samples():
    """A real prior (timing, lyrics: every conditioning a prime position gets) primed in one
    forward pass draws the tokens that chunked priming draws, for primes of any length, with
    and without XLA; the prior then sees only one-token steps."""
    config = with_lyrics(prior_preset("tiny", l_bins=V, labels=True, artist_bins=8,
                                      genre_bins=8, sample_rate=22050, max_duration=10.0),
                         n_tokens=8)
    prior = prior_lib.build_prior(config)
    rng = np.random.default_rng(3)
    for v in prior.weights:  # far from the initialisation: every prime token matters
        v.assign(rng.normal(0.0, 0.15, v.shape).astype(np.float32))
    labels = np.stack([make_labels(22050, 0, 0, a, [1], config.max_genre_words) for a in (1, 2)])
    chars = rng.integers(1, 80, (2, 8)).astype(np.int32)
    cond = prior.conditioning({"labels": labels, "lyrics": chars})
    prime = rng.integers(0, V, (2, 61)).astype(np.int32)
    one_pass, chunked = StepRecorder(prior, True), StepRecorder(prior, False)
    for jit_compile in (False, True):
        for length in (0, 1, 13, 40, 61):
            n_new = min(6, 64 - length)
            args = (cond, prime[:, :length], n_new)
            settings = dict(seed=2, temperature=1.0, top_k=8, chunk_size=5,
                            jit_compile=jit_compile)
            got = sample_window(one_pass, *args, **settings)
            np.testing.assert_array_equal(got, sample_window(chunked, *args, **settings))
    assert one_pass.step_lengths == {1} and chunked.step_lengths == {1, 5}


# --- windowed sampling -------------------------------------------------------------------------

HOPS = (8, 32, 128)


def original_starts(total_length, n_ctx, hop_length):
    starts = []
    for start in range(0, total_length - n_ctx + hop_length, hop_length):
        if start + n_ctx >= total_length:
            start = total_length - n_ctx
        starts.append(start)
    return starts


@pytest.mark.parametrize("total, n_ctx, hop", [(100, 16, 4), (64, 16, 8), (65, 16, 8),
                                               (16, 16, 2), (8192 * 3 + 5, 8192, 1024)])
def test_get_starts(total, n_ctx, hop):
    starts = windowed.get_starts(total, n_ctx, hop)
    assert starts == original_starts(total, n_ctx, hop)
    assert starts[0] == 0 and starts[-1] == total - n_ctx
    assert all(0 < b - a <= hop for a, b in zip(starts, starts[1:]))


def base_labels(batch=2, total=100 * 128):
    return np.stack([make_labels(total, 0, 0, artist, [2], 1) for artist in range(batch)])


@pytest.mark.parametrize("total", [100, 10, 16])
def test_windows_stitch_without_gaps_or_overlaps(total):
    prior = CounterPrior(n_ctx=16, l_bins=V, level=2, hop_length=HOPS[2])
    codes = windowed.sample_level(prior, total, HOPS, labels=base_labels(), hop_fraction=0.25,
                                  temperature=0.0, progress=False)
    expected = np.arange(total) % V
    np.testing.assert_array_equal(codes, np.stack([expected, expected]))
    starts = windowed.window_starts(total, 16, 0.25)
    assert len(prior.calls) == len(starts)
    for call, start in zip(prior.calls, starts):
        assert (call["labels"][:, OFFSET] == start * HOPS[2]).all()
        assert (call["labels"][:, LENGTH] == 16 * HOPS[2]).all()


def test_upsampler_windows_read_the_matching_upper_codes():
    upper = np.random.default_rng(1).integers(0, V, (2, 25)).astype(np.int32)
    prior = CounterPrior(n_ctx=16, l_bins=V, level=1, hop_length=HOPS[1])
    codes = windowed.upsample(prior, upper, HOPS, labels=base_labels(), hop_fraction=0.5,
                              temperature=0.0, progress=False)
    t = np.arange(100)
    np.testing.assert_array_equal(codes, (t + upper[:, t // 4]) % V)
    assert all(c["upper_codes"].shape == (2, 4) for c in prior.calls)


def test_primed_windows_keep_the_prime_and_feed_it_back():
    prime = np.random.default_rng(2).integers(0, V, (2, 37)).astype(np.int32)
    prior = CounterPrior(n_ctx=16, l_bins=V, level=2, hop_length=HOPS[2], mode="chain")
    codes = windowed.sample_level(prior, 100, HOPS, labels=base_labels(), prime=prime,
                                  hop_fraction=0.25, temperature=0.0, progress=False)
    assert codes.shape == (2, 100)
    np.testing.assert_array_equal(codes[:, :37], prime)
    np.testing.assert_array_equal(codes[:, 37:], (prime[:, -1:] + np.arange(1, 64)) % V)
    # Windows wholly inside the prime are skipped.
    first = prior.calls[0]["labels"][0, OFFSET] // HOPS[2]
    assert first == [s for s in windowed.get_starts(100, 16, 4) if s + 16 > 37][0]


def test_lyrics_follow_each_window():
    text = "the quick brown fox jumps over the lazy dog " * 3
    tokens = lyrics_lib.pad_tokens([lyrics_lib.encode(text)] * 2)
    prior = CounterPrior(n_ctx=16, l_bins=V, level=2, hop_length=HOPS[2], n_lyric_tokens=12)
    windowed.sample_level(prior, 64, HOPS, labels=base_labels(total=64 * 128), lyrics=tokens,
                          hop_fraction=0.5, temperature=0.0, progress=False)
    windows = [tuple(c["lyrics"][0]) for c in prior.calls]
    for call in prior.calls:
        offset = int(call["labels"][0, OFFSET])
        expected, _ = lyrics_lib.lyric_window(tokens[0][0], 64 * 128, offset, 16 * 128, 12)
        np.testing.assert_array_equal(call["lyrics"], np.stack([expected, expected]))
    assert len(set(windows)) == len(windows) > 1


def test_windowed_transformer_sampling_is_reproducible(stand_in, prime):
    def run():
        return windowed.sample_level(stand_in, 100, HOPS, labels=labels_for([1, 3]),
                                     prime=prime, hop_fraction=0.5, temperature=0.9, seed=5,
                                     chunk_size=16, progress=False)

    codes = run()
    assert codes.shape == (2, 100)
    np.testing.assert_array_equal(codes[:, :23], prime)
    np.testing.assert_array_equal(run(), codes)


# --- hierarchy modes and outputs ---------------------------------------------------------------

@pytest.fixture(scope="module")
def hierarchy():
    vqvae = build_vqvae(get_preset("tiny"))
    bins = vqvae.config.l_bins

    def prior(level, n_ctx):
        return StandInPrior(StandInConfig(n_ctx=n_ctx, blocks=4, l_bins=bins, width=16,
                                          depth=2, level=level, upper_bins=bins),
                            seed=level)

    return vqvae, [prior(0, 32), prior(1, 32), prior(2, 16)]


SETTINGS = SamplingSettings(n_samples=2, artist_id=3, genre_ids=[1],
                            temperatures=(0.9, 0.9, 1.0), seed=11)


def test_continue_and_upsample_read_back_saved_codes(hierarchy, tmp_path):
    vqvae, priors = hierarchy
    codes = modes.sample_codes("ancestral", vqvae, priors, replace(SETTINGS, seconds=0.1),
                               progress=False)
    loaded, _ = outputs.load_codes_npz(outputs.save_codes_npz(str(tmp_path / "codes.npz"),
                                                              codes))

    longer = modes.sample_codes("continue", vqvae, priors, replace(SETTINGS, seconds=0.15),
                                codes=loaded, progress=False)
    for level, c in longer.items():
        assert c.shape == (2, 3200 // vqvae.config.hop_lengths[level])
        np.testing.assert_array_equal(c[:, :codes[level].shape[1]], codes[level])

    up = modes.sample_codes("upsample", vqvae, [priors[0], priors[1], None],
                            replace(SETTINGS, seed=12), codes=loaded, progress=False)
    np.testing.assert_array_equal(up[2], codes[2])
    assert up[1].shape == codes[1].shape and up[0].shape == codes[0].shape
    assert (up[1] != codes[1]).any()  # resampled, with another seed


@pytest.mark.parametrize("mode", ["ancestral", "continue", "upsample", "primed"])
def test_streaming_samples_the_same_codes_and_decodes_the_same_audio(hierarchy, mode):
    """Levels interleaved window by window (streaming.interleave) give the codes of sampling
    them one after another, in every mode; the lowest level's audio decoded as it grows
    (ProgressiveDecoder) equals decoding it whole."""
    from jukebox_tf.sampling import streaming

    vqvae, priors = hierarchy
    t = np.arange(3000) / 22050
    settings, given = replace(SETTINGS, seconds=0.25), dict(progress=False)
    if mode in ("continue", "upsample"):
        given["codes"] = modes.sample_codes("ancestral", vqvae, priors,
                                            replace(SETTINGS, seconds=0.1), progress=False)
        if mode == "upsample":
            settings = SETTINGS
            priors = [priors[0], priors[1], None]
    elif mode == "primed":
        given["prompt"] = (0.5 * np.sin(2 * np.pi * 330 * t)).astype(np.float32)
    whole = modes.sample_codes(mode, vqvae, priors, settings, **given)
    calls, timings = [], {}
    streamed = modes.sample_codes(mode, vqvae, priors, settings, **given, timings=timings,
                                  on_lowest=lambda level, c: calls.append((level, c.copy())))
    assert sorted(streamed) == sorted(whole)
    for level in whole:
        np.testing.assert_array_equal(streamed[level], whole[level], err_msg=f"level {level}")
    # Called with the prime (or nothing), then after each of level 0's windows; the higher
    # levels were not complete before level 0 started.
    assert {level for level, _ in calls} == {0} and len(calls) == len(timings[0]) + 1
    assert [c.shape[1] for _, c in calls] == sorted(c.shape[1] for _, c in calls)
    np.testing.assert_array_equal(calls[-1][1], whole[0])
    assert calls[1][1].shape[1] < whole[0].shape[1]

    decode = lambda c: vqvae.decode(c, 0)  # noqa: E731
    field = streaming.receptive_field(vqvae.decoders[0], vqvae.config.emb_width)
    assert field > 0
    # An untrained codebook is all zeros: give the codes distinct vectors.
    bottleneck = vqvae.bottlenecks[0]
    saved = bottleneck.k.numpy()
    bottleneck.k.assign(np.random.default_rng(5).normal(size=saved.shape).astype(np.float32))
    try:
        decoder = streaming.ProgressiveDecoder(decode, vqvae.config.hop_lengths[0], field)
        pieces = [decoder.add(c[0]) for _, c in calls] + [decoder.finish()]
        full = np.asarray(decode(whole[0][:1]))[0]
    finally:
        bottleneck.k.assign(saved)
    assert sum(p is not None for p in pieces) > 2  # audio came out before the end
    audio = np.concatenate([p for p in pieces if p is not None])
    assert np.abs(full).max() > 0 and audio.shape == full.shape
    np.testing.assert_allclose(audio, full, rtol=0, atol=1e-5)


def test_auto_xla_compiles_small_priors_on_a_cpu_only(monkeypatch):
    prior = tf.Module()
    prior.weights = [tf.Variable(tf.zeros([3, 4])), tf.Variable(tf.zeros([5]))]
    assert prior_api.n_params(prior) == 17
    assert modes.use_xla(True, prior) and not modes.use_xla(False, prior)
    assert modes.use_xla("auto", prior)  # no GPU here
    monkeypatch.setattr(modes, "AUTO_XLA_MAX_CPU_PARAMS", 16)
    assert not modes.use_xla("auto", prior)


def test_primed_continues_the_prompt_codes_at_every_level(hierarchy):
    vqvae, priors = hierarchy
    t = np.arange(1400) / 22050
    prompt = (0.5 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    prompt_codes = modes.encode_prompt(vqvae, prompt)
    assert prompt_codes[2].shape == (1, 1400 // 128)
    codes = modes.sample_codes("primed", vqvae, [None, priors[1], priors[2]],
                               replace(SETTINGS, seconds=0.1), prompt=prompt, progress=False)
    assert sorted(codes) == [1, 2]  # no level-0 upsampler: stops at level 1
    for level in (1, 2):
        expected = np.repeat(prompt_codes[level], 2, axis=0)
        np.testing.assert_array_equal(codes[level][:, :expected.shape[1]], expected)


def test_a_level_made_part_by_part_is_the_level_made_whole(hierarchy):
    """sample_level_graph with stop_tokens, each part primed with the last: the windows of the
    whole level, the same tokens, parts ending at window ends. Below it, a level given only
    the codes above made so far stops before a window whose span above is missing, and
    LevelWindows says how many it needs: the served chain, window by window."""
    from jukebox_tf.export.graph_sampling import (GraphSettings, LevelWindows,
                                                  sample_level_graph)

    vqvae, priors = hierarchy
    hops = vqvae.config.hop_lengths
    rng = np.random.default_rng(3)
    top = rng.integers(0, vqvae.config.l_bins, (2, 16)).astype(np.int32)
    labels = tf.constant(np.stack([make_labels(22050, 0, 0, a, [1], 1) for a in (1, 2)]))
    settings = GraphSettings(tf.constant([0.9, 1.0]), tf.zeros([2], tf.int32), tf.zeros([2]),
                             tf.constant([7, 8], tf.int64))
    totals = {1: 16 * hops[2] // hops[1], 0: 16 * hops[2] // hops[0]}

    def run(level, upper, prime, stop=None):
        return sample_level_graph(priors[level], level, totals[level], hops, labels, settings,
                                  hop_fraction=0.5, upper_codes=upper, prime=prime,
                                  stop_tokens=stop).numpy()

    empty = np.zeros([2, 0], np.int32)
    whole = {1: run(1, top, empty)}
    whole[0] = run(0, whole[1], empty)
    assert whole[1].shape == (2, totals[1]) and whole[0].shape == (2, totals[0])
    part, ends = empty, []
    while part.shape[1] < totals[1]:
        part = run(1, top, part, part.shape[1] + 1)
        ends.append(part.shape[1])
    # Windows of 32 every 16 tokens: the first part is a whole window, then a hop each.
    assert ends == [32 + 16 * i for i in range((totals[1] - 32) // 16)] + [totals[1]]
    np.testing.assert_array_equal(part, whole[1])

    windows = LevelWindows.of(priors[0], 0, totals[0], hops, 0.5, upsampler=True)
    part, have, stalls = empty, 0, 0
    while part.shape[1] < totals[0]:
        more = run(0, whole[1][:, :have], part, part.shape[1] + 1)
        if more.shape[1] == part.shape[1]:  # waits for the level above
            need = int(windows.upper_end(windows.after(part.shape[1])))
            assert have < need <= totals[1]
            have, stalls = need, stalls + 1
        else:
            part = more
    np.testing.assert_array_equal(part, whole[0])
    assert stalls == int(windows.count)  # given just enough, each window asked for more first
    assert int(windows.after(totals[0])) == int(windows.count)


def test_mode_errors(hierarchy, tmp_path):
    vqvae, priors = hierarchy
    with pytest.raises(JukeboxError, match="unknown sampling mode"):
        modes.sample_codes("remix", vqvae, priors, SamplingSettings(seconds=0.1))
    with pytest.raises(JukeboxError, match="needs saved codes"):
        modes.sample_codes("continue", vqvae, priors, SamplingSettings(seconds=0.1))
    with pytest.raises(JukeboxError, match="longer"):
        modes.sample_codes("continue", vqvae, priors, SamplingSettings(seconds=0.01),
                           codes={2: np.zeros((1, 5), np.int32)}, progress=False)
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"not a zip")
    with pytest.raises(JukeboxError, match="not a codes file"):
        outputs.load_codes_npz(str(bad))


# --- the 1B lyrics model's layout: a lyric prefix in the one transformer -----------------------

CODES = 512  # most of the 591 tokens: random weights mostly draw codes, not characters


def lyric_prefix_prior():
    config = prior_preset("tiny", l_bins=CODES, depth=4, labels=True, artist_bins=8, genre_bins=8,
                          sample_rate=22050, max_duration=10.0, lyrics=True,
                          single_enc_dec=True, n_lyric_tokens=16, prime_len=16, n_vocab=79,
                          attn_order=(1, 2, 7, 0))
    prior = prior_lib.build_prior(config)
    assert isinstance(prior, prior_lib.LyricPrefixPrior)
    rng = np.random.default_rng(5)
    for v in prior.weights:  # far from the initialisation: the characters matter
        v.assign(rng.normal(0.0, 0.15, v.shape).astype(np.float32))
    # Weaker characters in the tied output, so that music positions mostly draw codes.
    table = prior.embedding.token_emb
    table.assign(tf.concat([table[:79] * 0.3, table[79:]], 0))
    labels = np.stack([make_labels(22050, 0, 0, a, [1], config.max_genre_words) for a in (1, 2)])
    return prior, labels, rng


def test_lyric_prefix_prior_samples_codes_as_its_naive_and_exported_samplers_do():
    """Cached (one-pass prime of the prefix, even for an empty prime) == a full forward pass
    per token == the exported graph sampler, over the whole token vocabulary; the results are
    codes, and the lyrics steer them."""
    from jukebox_tf.export.graph_sampling import GraphSettings, sample_window_graph

    prior, labels, rng = lyric_prefix_prior()
    config = prior.config
    chars = rng.integers(1, 79, (2, 16)).astype(np.int32)
    cond = prior.conditioning({"labels": labels, "lyrics": chars})
    prime = rng.integers(0, CODES, (2, 20)).astype(np.int32)
    for length in (0, 13):
        args = (prior, cond, prime[:, :length], 8)
        settings = dict(seed=4, temperature=1.0, top_k=40)
        got = sample_window(*args, chunk_size=4, **settings)
        np.testing.assert_array_equal(got, sample_window(*args, naive=True, **settings))
        assert got.min() >= 0 and got.max() < CODES and len(np.unique(got)) > 4
        greedy = sample_window(*args, temperature=0.0)
        tokens = np.zeros([2, config.n_ctx], np.int32)
        tokens[:, :length] = prime[:, :length]
        zeros = GraphSettings(temperature=tf.zeros([2]), top_k=tf.zeros([2], tf.int32),
                              top_p=tf.zeros([2]), seed=tf.zeros([2], tf.int64))
        out = sample_window_graph(prior, cond, tf.constant(tokens), tf.constant(length), 8,
                                  tf.zeros([2, 2], tf.int64), zeros).numpy()
        np.testing.assert_array_equal(out[:, :length], prime[:, :length])
        np.testing.assert_array_equal(out[:, length:length + 8], greedy)
        assert len(np.unique(greedy)) > 1
        np.testing.assert_array_equal(sample_window(*args, temperature=0.0, jit_compile=True),
                                      greedy)
    other = prior.conditioning({"labels": labels, "lyrics": chars[:, ::-1].copy()})
    assert not np.array_equal(sample_window(prior, other, prime[:, :0], 8, temperature=0.0),
                              sample_window(prior, cond, prime[:, :0], 8, temperature=0.0))


def test_lyric_prefix_prior_maps_codes_to_tokens_and_drawn_characters_to_code_0():
    prior, _, _ = lyric_prefix_prior()
    codes = tf.constant([[0, 5, CODES - 1]])
    np.testing.assert_array_equal(prior.to_tokens(codes), [[79, 84, 79 + CODES - 1]])
    np.testing.assert_array_equal(prior.to_codes(tf.constant([[3, 79, 84, 0]])), [[0, 0, 5, 0]])
