"""benchmarks/bench_common.py: the CPU steal figure and CPU kind every benchmark result
carries."""

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


_CPUINFO = """processor\t: 0
vendor_id\t: {vendor}
model name\t: {model}
flags\t\t: fpu sse2 avx2 fma {extra}

processor\t: 1
model name\t: {model}
flags\t\t: fpu sse2 avx2 fma {extra}
"""


@pytest.mark.parametrize("model,extra,isa", [
    ("AMD EPYC", "avx512f avx512_vnni avx512_bf16 avx512_vp2intersect",
     ["avx512_bf16", "avx512_vnni", "avx512f", "avx2"]),
    ("Intel(R) Xeon(R) Platinum 8480C", "avx512f avx512_bf16 amx_bf16 amx_tile amx_int8",
     ["amx_bf16", "amx_tile", "avx512_bf16", "avx512f", "avx2"]),
    ("Old CPU", "", ["avx2"])])
def test_cpu_info_names_the_model_and_its_matrix_instruction_sets(tmp_path, model, extra, isa):
    path = tmp_path / "cpuinfo"
    path.write_text(_CPUINFO.format(vendor="x", model=model, extra=extra))
    assert bench_common.cpu_info(str(path)) == {"model": model, "matrix_isa": isa}
    assert bench_common.cpu_info(str(tmp_path / "missing")) == {"model": None, "matrix_isa": []}


def test_result_records_the_cpu_kind_beside_the_machine_it_was_given(tmp_path, monkeypatch,
                                                                     capsys):
    cpu = {"model": "AMD EPYC", "matrix_isa": ["avx512_bf16", "avx2"]}
    monkeypatch.setattr(bench_common, "cpu_info", lambda: cpu)
    monkeypatch.setattr(bench_common, "cpu_ticks", lambda: None)  # no steal warning either
    path = tmp_path / "r.json"
    bench_common.write_result(str(path), {"machine": {"cpus": 2}})
    assert json.loads(path.read_text())["machine"] == {"cpus": 2, "cpu": cpu}
    assert "cpu: AMD EPYC (avx512_bf16, avx2)" in capsys.readouterr().out
    bench_common.write_result(str(path), {}, announce=False)  # a worker's part of a result
    assert json.loads(path.read_text())["machine"] == {"cpu": cpu}
    assert capsys.readouterr().out == ""
    monkeypatch.setattr(bench_common, "cpu_info", lambda: {"model": None, "matrix_isa": []})
    bench_common.write_result(str(path), {})
    assert "cpu: unknown; compare" in capsys.readouterr().out


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
