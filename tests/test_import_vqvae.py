"""The released VQ-VAE imported from Hugging Face transformers' Jukebox at its full `paper`
configuration: the same codes per level (the only differences are positions whose two nearest
codes float32 cannot tell apart, at most 0.1%) and decoded audio within 1e-4; the safetensors
save imports to the same run; the command line and the commands that load runs work on it.

The reference (tests/torch_scripts/hf_vqvae.py) draws random weights at std 1/sqrt(fan_in) and
each codebook from the encoder's outputs on music-like audio."""

import json

import numpy as np
import pytest
import soundfile as sf

from conftest import run_cli
from jukebox_tf.released.importer import import_weights
from jukebox_tf.vqvae.task import load_vqvae_run
from torch_reference import run_torch


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    out = tmp_path_factory.mktemp("hf_vqvae")
    run_torch("tests/torch_scripts/hf_vqvae.py", out)
    result = run_cli("import-weights", "--format", "hf", "--model", "vqvae", out / "model",
                     "--out", out / "runs", check=True)
    return out, dict(np.load(out / "reference.npz")), result.stdout


def codebook(model, level):
    [table] = [v for v in model.bottlenecks[level].variables if v.path.endswith("codebook")]
    return table.numpy().astype(np.float64)


def test_the_cli_says_what_it_wrote_with_the_released_parameter_count(reference):
    out, _, stdout = reference
    assert f"wrote {out / 'runs' / 'vqvae'}: 1,485,763 parameters, as the released model" \
        in stdout
    task = json.loads((out / "runs" / "vqvae" / "task.json").read_text())
    assert task["imported"] == {"format": "hf", "model": "vqvae", "files": [str(out / "model")]}
    assert task["vqvae"]["sample_rate"] == 44100 and task["vqvae"]["l_bins"] == 2048


def test_codes_and_decoded_audio_match_transformers(reference):
    out, ref, _ = reference
    model = load_vqvae_run(str(out / "runs" / "vqvae"))
    codes = model.encode(ref["audio"])
    for level in range(3):
        expected, got = ref[f"codes_l{level}"], codes[level].numpy()
        differ = np.flatnonzero(expected != got)
        assert len(differ) <= 0.001 * expected.size, (level, len(differ))
        # Each difference a near-tie: the two codes' squared distances differ by less than
        # float32 resolves in |x|^2 - 2 x.E + |E|^2.
        x = ref[f"latents_l{level}"].reshape(-1, 64).astype(np.float64)[differ]
        table = codebook(model, level)
        theirs, ours = (table[c.reshape(-1)[differ]] for c in (expected, got))
        gap = np.abs(((x - theirs) ** 2).sum(1) - ((x - ours) ** 2).sum(1))
        assert np.all(gap < 1e-6 * ((x ** 2).sum(1) + (theirs ** 2).sum(1))), (level, gap)
        decoded = model.decode(expected, level).numpy()
        assert np.abs(ref[f"decoded_l{level}"]).max() > 1.0
        np.testing.assert_allclose(decoded, ref[f"decoded_l{level}"], atol=1e-4, rtol=0)


def test_safetensors_and_bin_import_to_the_same_weights(reference, tmp_path):
    out, _, _ = reference
    [run] = import_weights("hf", "vqvae", [str(out / "model_st")], str(tmp_path),
                           progress=lambda message: None)
    a, b = load_vqvae_run(run), load_vqvae_run(str(out / "runs" / "vqvae"))
    for x, y in zip(a.variables, b.variables):
        np.testing.assert_array_equal(x.numpy(), y.numpy(), err_msg=x.path)


@pytest.mark.slow
def test_reconstruct_runs_on_the_imported_run(reference, tmp_path):
    out, ref, _ = reference
    sf.write(str(tmp_path / "clip.wav"), ref["audio"][0, :, 0], 44100)
    result = run_cli("reconstruct", "--run", out / "runs" / "vqvae", tmp_path / "clip.wav",
                     "--level", "2", "-o", tmp_path / "clip_l2.wav", check=True)
    assert (tmp_path / "clip_l2.png").exists()
    audio, rate = sf.read(str(tmp_path / "clip_l2.wav"))
    assert rate == 44100 and len(audio) == ref["audio"].shape[1], result.stdout
