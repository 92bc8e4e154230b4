"""benchmarks/bench_common.py: the CPU steal figure every benchmark result carries."""

import importlib.util
import json
import os

import pytest

# Loaded by path: putting benchmarks/ on sys.path would let benchmarks/serving.py shadow the
# `serving` package for every test module collected after this one.
_SPEC = importlib.util.spec_from_file_location(
    "bench_common", os.path.join(os.path.dirname(__file__), "..", "benchmarks", "bench_common.py"))
bench_common = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(bench_common)


def test_steal_percent_is_the_stolen_share_of_all_ticks():
    before = [100, 0, 10, 880, 0, 0, 0, 10]
    after = [150, 0, 20, 920, 0, 0, 0, 40]  # 130 ticks in all, 30 of them stolen
    assert bench_common.steal_percent(before, after) == 100 * 30 / 130
    assert bench_common.steal_percent(None, after) is None
    assert bench_common.steal_percent(after, after) is None  # no time passed


def test_result_records_steal_and_warns_when_high(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(bench_common, "_START_TICKS", [0, 0, 0, 50, 0, 0, 0, 0])
    monkeypatch.setattr(bench_common, "cpu_ticks", lambda: [30, 0, 0, 50, 0, 0, 0, 20])
    path = tmp_path / "r.json"
    assert bench_common.write_result(str(path), {"meets_targets": {"a": True}}) == 0
    assert json.loads(path.read_text())["cpu_steal_percent"] == 40.0
    assert "took 40% of the CPU" in capsys.readouterr().out


@pytest.mark.parametrize("trained,inference", [("mixed_bfloat16", "float32"),
                                                ("float32", "bfloat16")])
def test_precision_copy_holds_the_weights_and_computes_in_the_precision(trained, inference):
    import keras
    import numpy as np

    from jukebox_tf.training import global_dtype_policy

    def build():
        return keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])

    previous = keras.mixed_precision.dtype_policy()
    with global_dtype_policy(trained):
        model = build()
    copy = bench_common.precision_copy(model, build, inference)
    assert keras.mixed_precision.dtype_policy().name == previous.name
    assert model.layers[0].compute_dtype == trained.replace("mixed_", "")
    assert copy.layers[0].compute_dtype == inference
    for a, b in zip(model.get_weights(), copy.get_weights()):
        np.testing.assert_array_equal(a, b)
