"""`jukebox-tf sample` end to end on tiny run directories: every mode writes WAVs, PNGs,
codes.npz and an index.html that lists them; continue and upsample read back what sample
wrote; primed keeps the prompt's codes; bad inputs give one-line errors.

The runs are saved without training (random weights, a random VQ-VAE codebook so codes
vary), in the layout `train` writes: task.json and a checkpoint with EMA weights. Training
itself is covered by test_prior_task.py and test_vqvae_training.py; `make demo` runs the
trained chain."""

import contextlib
import io
import json
import os
import re
import shutil

import numpy as np
import pytest
import soundfile as sf

from test_export import save_run
from test_prior_task import write_codes

RATE = 22050


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """{"vqvae", "top", "up1", "up0", "codes", "root"}: a tiny VQ-VAE (hops 8/32/128, 64
    codes, 22050 Hz) and a top prior (labels and lyrics) and two upsamplers on codes that
    record that VQ-VAE run, as `jukebox-tf encode` does."""
    from jukebox_tf.prior.config import get_preset as prior_preset
    from jukebox_tf.prior.task import PriorTask
    from jukebox_tf.vqvae import get_preset
    from jukebox_tf.vqvae.task import VQVAETask

    root = tmp_path_factory.mktemp("sample_runs")
    paths = {"root": root, "vqvae": str(root / "vqvae")}
    save_run(VQVAETask(get_preset("tiny", sample_rate=RATE), None, 1), paths["vqvae"],
             codebook_std=0.05)
    codes = write_codes(str(root / "codes"))
    manifest_path = os.path.join(codes, "codes.json")
    with open(manifest_path) as f:
        manifest = json.load(f)
    manifest.update(sample_rate=RATE, vqvae_run=os.path.abspath(paths["vqvae"]))
    with open(manifest_path, "w") as f:
        json.dump(manifest, f)
    paths["codes"] = codes
    for name, level, preset in (("top", 2, "tiny"), ("up1", 1, "tiny_upsampler"),
                                ("up0", 0, "tiny_upsampler")):
        task = PriorTask.from_codes(prior_preset(preset), codes, level, 1, lyrics=level == 2)
        paths[name] = save_run(task, str(root / name), seed=level)
    return paths


def sample(*argv, expect=0):
    """Runs `jukebox-tf sample ARGV` in this process: (stdout, stderr)."""
    from jukebox_tf.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(["sample", *map(str, argv)])
    assert code == expect, f"exit {code}\n{out.getvalue()}\n{err.getvalue()}"
    return out.getvalue(), err.getvalue()


def files_under(folder):
    return {os.path.relpath(os.path.join(d, f), folder) for d, _, fs in os.walk(folder)
            for f in fs}


def referenced(page):
    return set(re.findall(r'(?:src|href)="([^"]+)"', page))


def load_npz(folder):
    from jukebox_tf.sampling.outputs import load_codes_npz

    return load_codes_npz(os.path.join(folder, "codes.npz"))


def two_ancestral(runs, seconds, out, *flags):
    """`sample` of two ancestral samples at every level; no --vqvae (the codes recorded it)."""
    return sample(
        "--prior", runs["top"], "--upsamplers", runs["up0"], runs["up1"], "--mode",
        "ancestral", "--artist", "ANN", "--genre", "Rock", "--genre", "polka", "--lyrics",
        "la la la", "--seconds", seconds, "--samples", 2, "--temperature", "1.0,0.9,0.9",
        "--seed", 3, "-o", out, *flags)


@pytest.fixture(scope="module")
def ancestral(runs):
    """Two ancestral samples of 0.1 s."""
    out = runs["root"] / "ancestral"
    stdout, stderr = two_ancestral(runs, 0.1, out, "--quiet")
    return out, stdout, stderr


@pytest.mark.slow
def test_ancestral_writes_every_level_and_an_index(runs, ancestral):
    out, stdout, stderr = ancestral
    top_tokens = int(0.1 * RATE) // 128
    codes, metadata = load_npz(out)
    assert {level: c.shape for level, c in codes.items()} == {
        2: (2, top_tokens), 1: (2, top_tokens * 4), 0: (2, top_tokens * 16)}
    assert all(c.min() >= 0 and c.max() < 64 for c in codes.values())
    files = files_under(out)
    # The top prior reads lyrics: the lyric alignment comes with the samples.
    assert files == {"index.html", "codes.npz", "alignment.png", "alignment.json"} | {
        f"level_{level}/{name}" for level in range(3)
        for name in ("sample_0.wav", "sample_1.wav", "spectrograms.png")}
    page = (out / "index.html").read_text()
    assert referenced(page) == files - {"index.html"}
    for level in range(3):
        audio, rate = sf.read(str(out / f"level_{level}" / "sample_1.wav"))
        assert rate == RATE and len(audio) == top_tokens * 128
        assert (out / f"level_{level}" / "spectrograms.png").read_bytes()[:4] == b"\x89PNG"
    # Names matched case-insensitively; the unknown genre word maps to 0 with a warning.
    settings = metadata["settings"]
    assert settings["artist"] == "ann (id 1)" and settings["genres"] == (
        "rock (id 1), polka (id 0)")
    assert settings["temperatures (top first)"] == [1.0, 0.9, 0.9]
    assert settings["xla (levels)"] == [2, 1, 0]  # the default on a CPU for small priors
    # Where the time went, window by window (these priors' contexts: 1, 2 and 8 windows),
    # on the page and printed.
    timing = settings["timing (s)"]
    assert {level: len(ts) for level, ts in timing["windows"].items()} == {
        "2": 1, "1": 2, "0": 8}
    assert timing["load"] > 0 and timing["decode"] > 0 and timing["alignment"] > 0
    assert all(t > 0 for ts in timing["windows"].values() for t in ts)
    assert "time: load" in stdout and "level 0" in stdout.split("time:")[1]
    assert "ann (id 1)" in page and "la la la" in page
    assert "unknown genre 'polka'" in stderr and "'rock', 'pop'" in stderr
    assert "using the VQ-VAE the priors' codes were encoded with" in stderr
    assert f"listen: {os.path.abspath(out / 'index.html')}" in stdout
    assert "level 0: 272 codes per sample" in stdout


def test_without_lyrics_the_page_links_every_file_and_the_npz_holds_the_codes(runs, tmp_path):
    """Through the command's own function, which also returns the codes it sampled."""
    from jukebox_tf.cli import build_parser
    from jukebox_tf.cli.sample import sample_to_dir
    from jukebox_tf.sampling import outputs

    out = tmp_path / "a"
    run = sample_to_dir(build_parser().parse_args(["sample", *map(str, (
        "--prior", runs["top"], "--upsamplers", runs["up0"], runs["up1"], "--seconds", 0.1,
        "--samples", 2, "--temperature", "1.0,0.9,0.9", "--seed", 11, "--no-xla", "--quiet",
        "-o", out))]))
    codes, paths = run["codes_arrays"], run
    top_tokens = 2176 // 128  # 0.1 s at 22050 Hz, in whole top-level codes
    assert {level: c.shape for level, c in codes.items()} == {
        2: (2, top_tokens), 1: (2, top_tokens * 4), 0: (2, top_tokens * 16)}
    # The page links every file written, and nothing else; no temp files are left.
    files = files_under(out)
    page = open(paths["html"]).read()
    assert referenced(page) == files - {"index.html"}
    assert len(files) == 3 * (2 + 1) + 2 and not any(".tmp" in f for f in files)
    assert "ancestral" in page and "temperatures" in page
    # codes.npz round trip.
    loaded, metadata = outputs.load_codes_npz(paths["codes"])
    assert loaded.keys() == codes.keys()
    for level in codes:
        np.testing.assert_array_equal(loaded[level], codes[level])
    assert metadata["settings"]["mode"] == "ancestral" and metadata["sample_rate"] == 22050


@pytest.mark.slow
def test_stream_writes_level_0_as_it_comes_and_the_same_samples(runs):
    """--stream: the same codes and files as without it, plus stream/sample_<i>.wav (the
    level-0 audio as it was written, renamed from .partial when complete), the time to its
    first second and the stream's own time in the record."""
    out, whole = runs["root"] / "streamed", runs["root"] / "whole"
    _, stderr = two_ancestral(runs, 1.1, out, "--stream")
    two_ancestral(runs, 1.1, whole, "--quiet")
    codes, metadata = load_npz(out)
    for level, c in load_npz(whole)[0].items():
        np.testing.assert_array_equal(codes[level], c)
    assert files_under(out) == files_under(whole) | {"stream/sample_0.wav",
                                                     "stream/sample_1.wav"}
    for i in range(2):
        streamed, rate = sf.read(str(out / "stream" / f"sample_{i}.wav"), dtype="int16")
        final, _ = sf.read(str(out / "level_0" / f"sample_{i}.wav"), dtype="int16")
        assert rate == RATE and len(streamed) == len(final) > RATE
        assert np.abs(streamed.astype(int) - final).max() <= 1  # 16-bit rounding at most
    timing = metadata["settings"]["timing (s)"]
    assert 0 < timing["first_second"] and timing["stream"] > 0
    assert "the first second of level-0 audio after" in stderr


@pytest.mark.slow
def test_continue_and_upsample_read_back_what_sample_wrote(runs, ancestral):
    out = ancestral[0]
    saved, _ = load_npz(out)
    # No --upsamplers: only the top level is continued (and decoded).
    longer = runs["root"] / "continued"
    stdout, _ = sample("--vqvae", runs["vqvae"], "--prior", runs["top"], "--mode", "continue",
                       "--codes", out / "codes.npz", "--seconds", 0.15, "--seed", 4, "-o",
                       longer, "--quiet")
    assert "level(s) 2 into" in stdout
    codes, metadata = load_npz(longer)
    assert sorted(codes) == [2] and codes[2].shape == (2, int(0.15 * RATE) // 128)
    np.testing.assert_array_equal(codes[2][:, :saved[2].shape[1]], saved[2])
    assert (codes[2][:, saved[2].shape[1]:] != 0).any()
    assert metadata["settings"]["mode"] == "continue"
    assert files_under(longer) == {"index.html", "codes.npz", "level_2/sample_0.wav",
                                   "level_2/sample_1.wav", "level_2/spectrograms.png"}

    # Upsample: no --prior needed; the top level is kept, the lower ones drawn again.
    up = runs["root"] / "upsampled"
    _, stderr = sample("--vqvae", runs["vqvae"], "--upsamplers", runs["up1"], runs["up0"],
                       "--mode", "upsample", "--codes", out / "codes.npz", "--seconds", 9,
                       "--seed", 5, "-o", up, "--quiet")
    assert "--seconds is ignored" in stderr
    codes, _ = load_npz(up)
    np.testing.assert_array_equal(codes[2], saved[2])
    assert codes[1].shape == saved[1].shape and codes[0].shape == saved[0].shape
    assert (codes[0] != saved[0]).any()
    assert referenced((up / "index.html").read_text()) == files_under(up) - {"index.html"}


@pytest.mark.slow
def test_primed_keeps_the_prompt_codes(runs, tmp_path):
    from jukebox_tf.audio.load import load_audio
    from jukebox_tf.sampling.modes import encode_prompt
    from jukebox_tf.vqvae.task import load_vqvae_run

    prompt = tmp_path / "prompt.wav"
    t = np.arange(RATE) / RATE
    sf.write(str(prompt), (0.4 * np.sin(2 * np.pi * 220 * t * (1 + t))).astype(np.float32),
             RATE, subtype="FLOAT")
    out = tmp_path / "primed"
    # --levels 2 1: level 0 is left out although its upsampler is given.
    stdout, stderr = sample(
        "--vqvae", runs["vqvae"], "--prior", runs["top"], "--upsamplers", runs["up1"],
        runs["up0"], "--levels", 2, 1, "--mode", "primed", "--prompt", prompt,
        "--prompt-seconds", 0.05, "--seconds", 0.1, "--artist", "nobody", "-o", out, "--quiet")
    assert "level(s) 2, 1 into" in stdout
    assert "unknown artist 'nobody'" in stderr and "known artists: 'ann', 'bob'" in stderr
    codes, metadata = load_npz(out)
    assert sorted(codes) == [1, 2] and sorted(os.listdir(out)) == [
        "codes.npz", "index.html", "level_1", "level_2"]
    expected = encode_prompt(load_vqvae_run(runs["vqvae"]),
                             load_audio(str(prompt), RATE, 1, max_seconds=0.05))
    assert expected[2].shape == (1, int(0.05 * RATE) // 128)
    for level in (1, 2):
        assert len(np.unique(expected[level])) > 1  # a real check, not all code 0
        assert codes[level].shape == (1, int(0.1 * RATE) // 128 * 128 // (8, 32, 128)[level])
        np.testing.assert_array_equal(codes[level][:, :expected[level].shape[1]],
                                      expected[level])
    assert metadata["settings"]["prompt"] == str(prompt)


def top_run_variant(runs, name, **changes):
    """A copy of the top prior's run directory with task.json fields changed (no weights are
    loaded before the checks, so the checkpoint does not need to match)."""
    folder = runs["root"] / name
    if not folder.exists():
        shutil.copytree(runs["top"], folder)
        saved = json.loads((folder / "task.json").read_text())
        for key, value in changes.items():
            section, field = key.split("__")
            saved[section][field] = value
        (folder / "task.json").write_text(json.dumps(saved))
    return folder


def test_bad_inputs_give_one_line_errors(runs, tmp_path, cli):
    vq, top, up1, up0 = runs["vqvae"], runs["top"], runs["up1"], runs["up0"]
    base = ("--vqvae", vq, "--prior", top, "-o", tmp_path / "x", "--quiet")
    missing = tmp_path / "missing"
    npz = tmp_path / "codes.npz"
    cases = [
        (("--vqvae", missing, "--prior", top, "--seconds", 1), "--vqvae .*missing: no such"),
        (("--vqvae", vq, "--prior", missing, "--seconds", 1), "--prior .*missing: no such"),
        (("--vqvae", vq, "--prior", runs["codes"], "--seconds", 1),
         "not a prior run directory"),
        (("--vqvae", top, "--prior", top, "--seconds", 1), "not a VQ-VAE run"),
        ((*base, "--upsamplers", missing, "--seconds", 1), "--upsamplers .*missing"),
        (("--vqvae", vq, "--prior", up1, "--seconds", 1), "--prior takes the top-level"),
        ((*base, "--upsamplers", top, "--seconds", 1), "pass it as --prior"),
        ((*base, "--upsamplers", up0, "--seconds", 1), "needs the level-1 one above it"),
        (("--vqvae", vq, "--prior", top_run_variant(runs, "bins", prior__l_bins=128),
          "--seconds", 1), "codebook size of 128 codes, the VQ-VAE's codebook has 64"),
        (("--vqvae", vq, "--prior", top_run_variant(runs, "rate", codes__sample_rate=16000),
          "--seconds", 1), "16000 Hz audio, the VQ-VAE works at a sample rate of 22050"),
        (("--vqvae", vq, "--prior", top_run_variant(runs, "levels", prior__levels=4,
                                                    prior__level=3, codes__levels=4),
          "--seconds", 1), "4-level VQ-VAE, the VQ-VAE has 3 levels"),
        (("--vqvae", vq, "--prior", top_run_variant(runs, "hops", codes__hop_lengths=[4, 32,
                                                                                      128]),
          "--seconds", 1), r"hop lengths \(4, 32, 128\)"),
        ((*base, "--seconds", 0), "--seconds must be positive"),
        ((*base, "--seconds", -2), "--seconds must be positive"),
        ((*base,), "--mode ancestral needs --seconds"),
        ((*base, "--mode", "primed", "--seconds", 1), "--mode primed needs --prompt"),
        ((*base, "--mode", "primed", "--seconds", 1, "--prompt", missing), "no such file"),
        ((*base, "--mode", "continue", "--seconds", 1), "--mode continue needs --codes"),
        ((*base, "--mode", "upsample", "--upsamplers", up1), "--mode upsample needs --codes"),
        ((*base, "--mode", "continue", "--seconds", 1, "--codes", npz),
         "not a codes file from `jukebox-tf sample`"),
        ((*base, "--mode", "upsample", "--codes", npz),
         "--mode upsample needs --upsamplers"),
        ((*base, "--seconds", 1, "--codes", npz), "--codes is for --mode continue or upsample"),
        ((*base, "--seconds", 1, "--temperature", "1,2"), "2 values for 3 levels"),
        ((*base, "--seconds", 1, "--levels", 2, 0, "--upsamplers", up0, up1),
         "without gaps"),
        ((*base, "--seconds", 1, "--levels", 1), "level 1 needs its upsampler"),
        ((*base, "--seconds", 1, "--top-p", 1.5), "--top-p must be within"),
    ]
    npz.write_bytes(b"not a zip")
    for argv, message in cases:
        _, stderr = sample(*argv, "-o", tmp_path / "x", expect=2)
        assert stderr.startswith("jukebox-tf sample: error: "), stderr
        assert re.search(message, stderr), (message, stderr)
        assert stderr.count("\n") == 1 and "Traceback" not in stderr
    # Through the console entry point: exit status 2, no traceback.
    result = cli("sample", *base, "--mode", "continue", "--seconds", 1)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "jukebox-tf sample: error: --mode continue needs --codes" in result.stderr
