"""Runs imported from OpenAI's files (the fixtures written by the original code) go through
the commands unchanged: `sample` in every mode with artist, genre and lyric names from the
original's vocabularies, `export`, `serve` and `generate` over gRPC. So does a whole 1B lyrics
JukeboxModel saved by Hugging Face (its top prior reads the lyrics as a prefix and names v3
labels, its upsamplers v2)."""

import json
import os

import numpy as np
import pytest
import soundfile as sf

from conftest import server_process
from jukebox_tf.released.importer import import_weights
from test_cli_sample import load_npz, sample

FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures", "released")
FILES = ["vqvae", "prior_level_0", "prior_level_1", "5b_lyrics_prior_level_2"]
RATE = 44100

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    out = tmp_path_factory.mktemp("imported")
    written = import_weights(
        "openai", "5b_lyrics", [os.path.join(FIXTURES, "openai", f"{f}.pth.tar") for f in FILES],
        str(out / "runs"), vocab_files=[os.path.join(FIXTURES, "vocab", f) for f in (
            "v2_artist_ids.txt", "v2_genre_ids.txt")], progress=lambda message: None)
    return out, dict(zip(["vqvae", "up0", "up1", "top"], written))


def test_sample_runs_every_mode_with_the_original_names(runs):
    out, r = runs
    hierarchy = ["--prior", r["top"], "--upsamplers", r["up0"], r["up1"]]
    stdout, stderr = sample(*hierarchy, "--mode", "ancestral", "--artist", "June & the Moths",
                            "--genre", "Hip Hop", "--lyrics", "la la la, the moths", "--seconds",
                            0.4, "--seed", 1, "-o", out / "ancestral", "--quiet")
    assert "unknown artist" not in stderr and "unknown genre" not in stderr
    check_alignment(out / "ancestral", "la la la, the moths", 137)
    codes, meta = load_npz(out / "ancestral")
    assert {level: c.shape[1] for level, c in codes.items()} == {2: 137, 1: 548, 0: 2192}
    audio, rate = sf.read(str(out / "ancestral" / "level_0" / "sample_0.wav"))
    assert rate == RATE and len(audio) == 137 * 128 and np.isfinite(audio).all()
    for mode, extra in (("continue", ["--codes", out / "ancestral" / "codes.npz",
                                      "--seconds", 0.6]),
                        ("upsample", ["--codes", out / "ancestral" / "codes.npz"])):
        sample(*hierarchy, "--mode", mode, *extra, "--artist", "june_the_moths", "-o",
               out / mode, "--quiet")
        assert (out / mode / "level_0" / "sample_0.wav").exists()
    sf.write(str(out / "prompt.wav"), audio[:RATE // 4], RATE)
    sample(*hierarchy, "--mode", "primed", "--prompt", out / "prompt.wav", "--seconds", 0.5,
           "-o", out / "primed", "--quiet")
    primed, _ = load_npz(out / "primed")
    assert primed[2].shape[1] == int(0.5 * RATE) // 128


def check_alignment(folder, lyrics, n_tokens):
    """The lyric alignment sample wrote: the picture on the page, one row per top-level token
    (pooled past 1024), a column per character."""
    assert "alignment.png" in (folder / "index.html").read_text()
    assert (folder / "alignment.png").stat().st_size > 1000
    data = json.loads((folder / "alignment.json").read_text())
    sample = data["samples"][0]
    assert sample["characters"] == lyrics
    weights = np.array(sample["weights_uint8"])
    assert weights.shape == (n_tokens, len(lyrics)) and weights.max() == 255


@pytest.fixture(scope="module")
def runs_1b(tmp_path_factory):
    out = tmp_path_factory.mktemp("imported_1b")
    written = import_weights(
        "hf", "1b_lyrics", [os.path.join(FIXTURES, "hf", "jukebox_model")], str(out / "runs"),
        vocab_files=[os.path.join(FIXTURES, "vocab", f"{v}_{what}_ids.txt")
                     for v in ("v2", "v3") for what in ("artist", "genre")],
        progress=lambda message: None)
    return out, dict(zip(["vqvae", "up0", "up1", "top"], written))


def test_the_1b_lyrics_hierarchy_samples_with_the_original_names(runs_1b):
    out, r = runs_1b
    stdout, stderr = sample("--prior", r["top"], "--upsamplers", r["up0"], r["up1"],
                            "--artist", "June & the Moths", "--genre", "Hip Hop", "--lyrics",
                            "la la la, the moths", "--seconds", 0.4, "--seed", 1, "-o",
                            out / "ancestral", "--quiet")
    assert "unknown" not in stderr
    check_alignment(out / "ancestral", "la la la, the moths", 137)
    codes, meta = load_npz(out / "ancestral")
    assert {level: c.shape[1] for level, c in codes.items()} == {2: 137, 1: 548, 0: 2192}
    assert all(c.min() >= 0 and c.max() < 2048 for c in codes.values())
    audio, rate = sf.read(str(out / "ancestral" / "level_0" / "sample_0.wav"))
    assert rate == RATE and len(audio) == 137 * 128 and np.isfinite(audio).all()


@pytest.mark.parametrize("which", ["5b_lyrics", "1b_lyrics"])
def test_export_serve_and_generate(request, which, cli):
    # Each command in a process of its own, as a user runs them: the export and the server
    # build large graphs that would otherwise stay in this test worker for the rest of the run.
    from serving.toy_model import write_model_config

    out, r = request.getfixturevalue("runs" if which == "5b_lyrics" else "runs_1b")
    base = out / "models" / "jukebox"
    cli("export", "--prior", r["top"], "--upsamplers", r["up0"], r["up1"], "--out", base,
        "--max-seconds", 2, "--no-warmup", "--quiet", check=True)
    config = write_model_config(str(out / "models.config"), "jukebox", str(base))
    clip = out / "served.wav"
    with server_process(config, "jukebox") as target:
        cli("generate", "--server", target, "--model", "jukebox", "--artist",
            "June & the Moths", "--genre", "hip hop", "--lyrics", "la la", "--seconds", 0.2,
            "--seed", 3, "-o", clip, "--quiet", check=True)
    audio, rate = sf.read(str(clip))
    assert rate == RATE and len(audio) == round(0.2 * RATE) and np.isfinite(audio).all()
