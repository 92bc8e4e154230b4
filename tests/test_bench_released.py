"""The released models' benchmarks at a reduced size on the CPU, with the parity tests' small
widths and 16 layers (the 1B model's first prime-attention layer is layer 15).

benchmarks/released_models.py (the 1b_lyrics and level-0 upsampler layouts, a short context)
must agree with the PyTorch reference (logits within 1e-4, the same greedy tokens with and
without XLA) and report positive speeds and memory figures; its full-size run is for a GPU.
benchmarks/released_hierarchy.py (a whole 1b_lyrics JukeboxModel written by the reference,
through import-weights, sample in every mode, export, serve and generate) must pass its checks
and report every step; its full-size run is on the CPU (benchmarks/README.md)."""

import pytest

from bench_runner import run_benchmark
from torch_reference import torch_python

TOKENS = 16


@pytest.mark.slow
def test_released_models_benchmark_agrees_with_the_reference(tmp_path):
    # One thread per framework: on a shared 2-core host, two OpenMP threads of the reference
    # stall for seconds whenever another process holds a core.
    result, _ = run_benchmark(
        "released_models.py", tmp_path / "released.json", "--small", "--depth", 16, "--n-ctx",
        128, "--tokens", TOKENS, "--repeats", 1, "--threads", 1, "--torch-python",
        torch_python(), "--work", tmp_path)

    assert set(result["layouts"]) == {"1b_lyrics", "upsampler_0"}
    assert result["meets_targets"] and all(result["meets_targets"].values())
    for name, r in result["layouts"].items():
        assert r["spec"]["depth"] == 16 and r["spec"]["n_ctx"] == 128
        assert r["params"] == r["reference"]["params"], name
        p = r["parity"]
        assert p["logit_std"] > 0.5  # of order one: a wrong import cannot hide
        assert p["max_abs_logits"] <= 1e-4, (name, p)
        assert p.get("max_abs_sequence_logits", 0.0) <= 1e-4, (name, p)
        assert p["bits_per_token_diff"] <= 1e-4, (name, p)
        for mode in ("graph", "xla"):
            s = r["sampling"][mode]
            assert s["tokens_equal_reference"] and s["first_difference"] is None, (name, mode)
            assert s["deterministic"], (name, mode)
            assert s["tokens_per_s"] > 0 and s["peak_mb"] > 0, (name, mode, s)
        ref = r["reference"]
        assert ref["sampled_shape"] == [1, TOKENS]
        assert ref["tokens_per_s"] > 0 and ref["peak_memory_mb"] > 0 and ref["deterministic"]
    assert "max_abs_sequence_logits" in result["layouts"]["1b_lyrics"]["parity"]
    assert result["machine"]["devices"] and result["memory_kind"]


@pytest.mark.slow
def test_released_hierarchy_runs_every_command(tmp_path):
    result, _ = run_benchmark(
        "released_hierarchy.py", tmp_path / "hierarchy.json", "--small", "--depth", 16,
        "--seconds", 0.05, "--torch-python", torch_python(), "--work", tmp_path)
    assert result["ok"], result.get("error")
    steps = result["steps"]
    assert list(steps) == [
        "reference writes the checkpoint", "import-weights", "sample ancestral",
        "sample continue", "sample upsample", "sample primed", "export", "serve", "generate"]
    assert all(s["wall_s"] > 0 and s["peak_rss_mb"] > 100 for s in steps.values()), steps
    # The four runs of a whole JukeboxModel: the VQ-VAE is the released one at any --depth.
    written = steps["import-weights"]["written"]
    assert len(written) == 4 and any("vqvae: 1,485,763 parameters, as the released" in w
                                     for w in written), written
    top = 0.05 * 44100 // 128
    checks = result["checks"]
    assert checks["ancestral"] == {"top_tokens": top, "alignment_shape": [top, 38]}
    assert checks["continue"]["top_tokens"] == checks["primed"]["top_tokens"] == 2 * top
    assert checks["generate"]["samples"] == round(0.05 * 44100)
    assert not list(tmp_path.glob("jukebox-hierarchy-*"))  # the work folder is removed
