"""The released priors' layouts imported from Hugging Face transformers' Jukebox compute what it
computes: with random weights at a scale where logits are of order one, the logits agree within
1e-4 with labels, timing, the upsampler conditioner and lyrics, the bits per token agree, and
greedy sampling over two windows with the key/value cache draws the same tokens.

The reference runs in the PyTorch venv (tests/torch_scripts/hf_prior.py); small layouts are
sampled, layouts at the released widths, heads and blocks (fewer layers, shorter context) are
compared by their logits."""

import json

import numpy as np
import pytest

from jukebox_tf.prior.task import load_prior_run
from jukebox_tf.released.importer import import_weights
from jukebox_tf.sampling.windowed import sample_level
from torch_reference import run_torch

SCRIPT = "tests/torch_scripts/hf_prior.py"
HOPS = [8, 32, 128]
SMALL = dict(width=64, depth=3, heads=2, n_ctx=256, blocks=16, artist_bins=40, genre_bins=12)
LAYOUTS = {
    "upsampler_0": dict(SMALL, layout="upsampler", level=0, heads=1, cond_width=32,
                        cond_depth=9, sample=True),
    "upsampler_1": dict(SMALL, layout="upsampler", level=1, heads=1, cond_width=32,
                        cond_depth=9, sample=True),
    "5b": dict(SMALL, layout="5b", sample=True),
    # 20 layers: attn_order 10's first cross-attention layer is layer 18.
    "5b_lyrics": dict(SMALL, layout="5b_lyrics", depth=20, n_lyric_tokens=32, lyric_width=32,
                      lyric_depth=2, lyric_heads=2, lyric_blocks=4, sample=True),
    # 16 layers: attn_order 12's first prime-attention layer (the lyric prefix) is layer 15.
    "1b_lyrics": dict(SMALL, layout="1b_lyrics", depth=16, n_lyric_tokens=32, sample=True),
    # The released widths, heads, blocks and label sizes; fewer layers, a shorter context.
    "upsampler_0_wide": dict(layout="upsampler", level=0, width=1920, depth=2, heads=1,
                             n_ctx=1024, blocks=128, artist_bins=4111, genre_bins=120,
                             cond_width=1024, cond_depth=9),
    "5b_wide": dict(layout="5b", width=4800, depth=2, heads=8, n_ctx=1024, blocks=128,
                    artist_bins=4111, genre_bins=120),
    "5b_lyrics_wide": dict(layout="5b_lyrics", width=480, depth=20, heads=8, n_ctx=1024,
                           blocks=128, artist_bins=4111, genre_bins=120, n_lyric_tokens=512,
                           lyric_width=1280, lyric_depth=2, lyric_heads=4, lyric_blocks=32),
}
SLOW = {name for name in LAYOUTS if name.endswith("_wide")}


@pytest.fixture(scope="module")
def imported(tmp_path_factory):
    """name -> (reference npz, the imported prior), made on first use."""
    cache = {}

    def get(name):
        if name not in cache:
            spec = LAYOUTS[name]
            out = tmp_path_factory.mktemp(name)
            run_torch(SCRIPT, json.dumps(spec), out)
            model = "upsamplers" if spec["layout"] == "upsampler" else spec["layout"]
            [run] = import_weights("hf", model, [str(out / "model")], str(out / "runs"),
                                   progress=lambda message: None)
            cache[name] = (dict(np.load(out / "reference.npz")), load_prior_run(run))
        return cache[name]

    return get


def inputs(ref, prior):
    n = prior.config.n_ctx
    x = {"codes": ref["codes"], "labels": ref["labels"].astype(np.int32)}
    if prior.config.is_upsampler:
        x["upper_codes"] = ref["upper_codes"][:, :n // prior.config.hop_ratio]
    if "lyrics" in ref:
        x["lyrics"] = ref["lyrics"]
    return x


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow) if n in SLOW else n
                                  for n in LAYOUTS])
def test_logits_and_bits_per_token_match_transformers(imported, name):
    ref, prior = imported(name)
    out = prior(inputs(ref, prior))
    logits = out["logits"].numpy()
    assert np.abs(ref["logits"]).std() > 0.5  # of order one: a wrong import cannot hide
    np.testing.assert_allclose(logits, ref["logits"], atol=1e-4, rtol=0)
    if "sequence_logits" in ref:
        np.testing.assert_allclose(out["sequence_logits"].numpy(), ref["sequence_logits"],
                                   atol=1e-4, rtol=0)
    assert float(out["metrics"]["bits_per_token"]) == pytest.approx(
        float(ref["bits_per_token"]), abs=1e-4)
    if "lyric_bits_per_token" in ref:
        assert float(out["metrics"]["lyric_bits_per_token"]) == pytest.approx(
            float(ref["lyric_bits_per_token"]), abs=1e-4)


@pytest.mark.parametrize("name", [n for n in LAYOUTS if LAYOUTS[n].get("sample")])
def test_greedy_sampling_over_two_windows_draws_the_same_tokens(imported, name):
    ref, prior = imported(name)
    config, hop = prior.config, int(ref["hop"])
    labels = ref["labels"].astype(np.int32)
    lyrics = None
    if config.lyrics:  # the whole song's lyrics: each window picks its own part
        full = np.tile(ref["full_lyrics"], (len(labels), 1)).astype(np.int32)
        lyrics = (full, np.full(len(labels), full.shape[1], np.int32))
    codes = sample_level(prior, config.n_ctx + hop, HOPS, labels=labels, lyrics=lyrics,
                         upper_codes=ref["upper_codes"] if config.is_upsampler else None,
                         hop_fraction=hop / config.n_ctx, temperature=0.0, level=config.level,
                         progress=False)
    np.testing.assert_array_equal(codes, ref["sampled"])
