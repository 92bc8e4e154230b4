"""benchmarks/generate.py --quick --preset tiny: the whole hierarchy through `jukebox-tf sample`
(default flags) and through the served SavedModel, with the keys issue 20 names and the time
split as the docstring says (the figures themselves are for benchmarks/README.md)."""

import os

import pytest

from bench_runner import run_benchmark


@pytest.mark.slow
def test_generate_benchmark_measures_both_paths(tmp_path):
    # Exit 1 is a missed speed target, which this test does not judge.
    result, proc = run_benchmark("generate.py", tmp_path / "generate.json", "--quick",
                                 "--preset", "tiny", "--keep", tmp_path / "work",
                                 timeout=1200, exit_codes=(0, 1))
    for key in ("cli_realtime_factor_1", "cli_realtime_factor_4", "served_realtime_factor_1",
                "served_realtime_factor_4", "served_plain_realtime_factor_1",
                "served_plain_generate_realtime_factor_4", "startup_s", "first_call_s",
                "first_call_cold_s", "first_sound_s", "served_first_sound_s",
                "served_stream_wall_s", "served_cli_wall_s"):
        assert result[key] > 0 or key == "first_call_s" and result[key] >= 0, key
    assert set(result["meets_targets"]) == {
        f"{path}_realtime_factor_{b}" for path in ("cli", "served") for b in (1, 4)}
    assert (proc.returncode == 0) == all(result["meets_targets"].values())
    assert os.listdir(tmp_path / "work" / "xla-cache")  # the commands' compilation cache
    for samples in ("1", "4"):
        [cli] = result["cli"][samples]
        assert cli["seconds"] == 5.0 and cli["samples"] == int(samples)
        assert set(cli["windows_s"]) == {"0", "1", "2"}
        # The record splits the process's wall time: nothing counted twice.
        parts = (cli["load_s"] + sum(cli["level_s"].values()) + cli["alignment_s"]
                 + cli["decode_s"])
        assert 0 < cli["startup_s"] and abs(cli["startup_s"] + parts - cli["wall_s"]) < 1e-6
        [chain] = result["served"][samples]
        assert list(chain["steps_s"]) == ["sample level 2", "upsample level 1",
                                          "upsample level 0", "decode level 0"]
        assert result["served_plain"][samples]["chain"]["seconds"] == 5.0
        # The clips themselves: every sample decoded at level 0.
        wavs = os.listdir(tmp_path / "work" / f"cli_5.0_{samples}" / "level_0")
        assert sorted(w for w in wavs if w.endswith(".wav")) == [
            f"sample_{i}.wav" for i in range(int(samples))]
