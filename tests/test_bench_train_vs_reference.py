"""benchmarks/train_vs_reference.py at a tiny size (one layer, 128 tokens, two pairs): both
workers train the same prior (equal parameter counts, the same loss at the start) and the JSON
holds the paired times, positive, and the host (the figures are for benchmarks/README.md)."""

import pytest

from bench_runner import run_benchmark
from torch_reference import torch_python


@pytest.mark.slow
def test_train_vs_reference_times_both_steps(tmp_path):
    # One thread each, as the other reference benchmarks' tests: on a shared 2-core host, two
    # OpenMP threads of the reference stall whenever another process holds a core.
    result, _ = run_benchmark(
        "train_vs_reference.py", tmp_path / "train_vs_reference.json", "--depth", 1,
        "--n-ctx", 128, "--pairs", 2, "--batch-size", 2, "--warmup", 2, "--pause", 0.2,
        "--threads", 1, "--torch-python", torch_python(), timeout=600)
    assert result["depth"] == 1 and result["n_ctx"] == 128 and result["blocks"] == 2
    assert result["tokens_per_step"] == 2 * 128
    assert result["params"] == result["params_reference"] == result["params_expected"] > 0
    for name in ("ours", "reference"):
        side = result[name]
        assert side["precision"] == "float32", name
        assert len(side["steps_s"]) == 2 and all(t > 0 for t in side["steps_s"]), name
        assert side["first_step_s"] > 0 and len(side["warmup_steps_s"]) == 1, name
        assert side["step_s_median"] > 0 and side["tokens_per_s"] > 0, name
        # The same batch and model: both start near log2(512) = 9 bits per token.
        assert 8 < side["loss_first"] < 10, (name, side["loss_first"])
    assert len(result["ratios"]) == 2 and result["ratio_median"] > 0
    assert result["ratio_min"] <= result["ratio_median"] <= result["ratio_max"]
    assert set(result["meets_targets"]) == {"train"}
    host = result["host"]
    assert {"cpu_model", "avx512f", "avx512_bf16", "amx_tile", "onednn"} <= set(host)
    assert result["machine"]["tensorflow"] and result["machine"]["torch"]
    assert len(result["load_average"]["start"]) == 3 and "cpu_steal_percent" in result
