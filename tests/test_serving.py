"""End to end tests of serving/ over real localhost ports with the stock TF Serving client."""

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

import grpc
import numpy as np
import portpicker
import pytest
import tensorflow as tf
from tensorflow.core.framework import tensor_pb2, tensor_shape_pb2, types_pb2
from tensorflow_serving.apis import (get_model_metadata_pb2, get_model_status_pb2, model_pb2,
                                     model_service_pb2_grpc, predict_pb2,
                                     prediction_service_pb2_grpc)

from jukebox_tf.errors import JukeboxError
from serving import client
from serving.batching import Batcher
from serving.config import (BatchingOptions, ConfigError, VersionPolicy, load_batching_options,
                            load_model_server_config)
from serving.model_manager import scan_versions
from serving.options import Limits, ServerOptions
from serving.server import ModelServer
from serving.servable import Servable
from serving.toy_model import CODEBOOK, save_toy_model, write_model_config
from serving.validation import RequestError, SignatureSpec, TensorSpec, invalid

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
INVALID, NOT_FOUND = grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND
LIMITS = Limits(max_batch_size=16, max_elements=100_000, max_request_bytes=256 << 10)


# --- tiny SavedModels ---------------------------------------------------------------------


@pytest.fixture(scope="session")
def versions(tmp_path_factory):
    """Two finished versions to copy into base paths: scale 2 and scale 3."""
    root = tmp_path_factory.mktemp("tiny")
    save_toy_model(str(root / "v1"), 2.0)
    save_toy_model(str(root / "v2"), 3.0)
    return root


def write_config(path, base, num_versions):
    return write_model_config(str(path), "tiny", base, num_versions, {"stable": 1})


def start_server(tmp, versions, **options):
    (tmp / "base").mkdir()
    shutil.copytree(versions / "v1", tmp / "base" / "1")
    config = write_config(tmp / "models.config", "base", 1)  # relative to the config file
    options = dict(port=portpicker.pick_unused_port(), rest_port=portpicker.pick_unused_port(),
                   poll_seconds=0.2, limits=LIMITS, grace_seconds=2.0) | options
    return ModelServer(config, ServerOptions(**options),
                       checks=[refuse_forbidden_names]).start()


def refuse_forbidden_names(spec, arrays):
    """A Python-side check, as the export may add for what JSON rules cannot say."""
    if spec.name == "greet" and b"forbidden" in arrays["name"].tolist():
        raise invalid("input 'name' of signature 'greet': that name is forbidden")


@pytest.fixture(scope="module")
def server(versions, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("served")
    (tmp / "limits.json").write_text(json.dumps(
        {"tiny": {"serving_default": {"x": {"max_dims": [None, 64]}}}}))
    srv = start_server(tmp, versions, input_limits=str(tmp / "limits.json"))
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def channel(server):
    with client.connect(server.target) as ch:
        yield ch


@pytest.fixture(scope="module")
def in_process(versions):
    return tf.saved_model.load(str(versions / "v1")).signatures


# --- request helpers ----------------------------------------------------------------------

X = np.arange(12, dtype=np.float32).reshape(3, 4) / 7
CODES = np.array([[0, 3, 15], [1, 2, 4]], np.int32)
GAIN = np.array([[1.0, 0.5], [2.0, -1.0]], np.float32)
NAMES = np.array([b"ada", "bé".encode()], dtype=object)


def request(inputs, signature="", model="tiny", version=None, label="", output_filter=()):
    spec = model_pb2.ModelSpec(name=model, signature_name=signature, version_label=label)
    if version is not None:
        spec.version.value = version
    req = predict_pb2.PredictRequest(model_spec=spec, output_filter=list(output_filter))
    for name, value in inputs.items():
        req.inputs[name].CopyFrom(value if isinstance(value, tensor_pb2.TensorProto)
                                  else tf.make_tensor_proto(value))
    return req


def raw_tensor(dtype, dims, **values):
    shape = tensor_shape_pb2.TensorShapeProto(
        dim=[tensor_shape_pb2.TensorShapeProto.Dim(size=d) for d in dims])
    return tensor_pb2.TensorProto(dtype=dtype, tensor_shape=shape, **values)


def predict_stub(channel):
    return prediction_service_pb2_grpc.PredictionServiceStub(channel)


def rest(server, path, body=None):
    """(HTTP status, JSON) of a REST call; `body` is an object or raw bytes."""
    data = body if body is None or isinstance(body, bytes) else json.dumps(body).encode()
    req = urllib.request.Request(f"http://127.0.0.1:{server.rest_port}{path}", data=data,
                                 method="GET" if data is None else "POST")
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def assert_healthy(channel):
    out = client.predict(channel, "tiny", {"x": X})
    np.testing.assert_allclose(out["y"], X * 2)


# --- config -------------------------------------------------------------------------------


def test_shipped_configs_parse():
    config = load_model_server_config(os.path.join(REPO, "serving", "models.config"))
    (model,) = config.model_config_list.config
    assert model.name == "jukebox" and model.model_platform == "tensorflow"
    assert model.base_path == os.path.join(REPO, "models", "jukebox")  # relative to serving/
    assert VersionPolicy.from_model_config(model) == VersionPolicy("latest", 2)
    opts = load_batching_options(os.path.join(REPO, "serving", "batching.config"))
    assert opts.max_batch_size == 8 and opts.allowed_batch_sizes[-1] == 8


def test_bad_configs_are_reported(tmp_path):
    bad = tmp_path / "bad.config"
    bad.write_text('model_config_list { config { name: "a" base_pth: "x" } }')
    with pytest.raises(ConfigError, match="bad.config.*base_pth"):
        load_model_server_config(str(bad))
    bad.write_text('model_config_list { config { name: "a" base_path: "x" '
                   'model_platform: "onnx" } }')
    with pytest.raises(ConfigError, match="onnx"):
        load_model_server_config(str(bad))
    bad.write_text("max_batch_size { value: 4 } allowed_batch_sizes: 2")
    with pytest.raises(ConfigError, match="allowed_batch_sizes"):
        load_batching_options(str(bad))


def test_version_policies():
    assert VersionPolicy("latest", 2).select([1, 5, 3]) == {3, 5}
    assert VersionPolicy("all").select([1, 5, 3]) == {1, 3, 5}
    assert VersionPolicy("specific", versions=frozenset({1, 4})).select([1, 5, 3]) == {1}


# --- gRPC: metadata, status, predict ------------------------------------------------------


def test_metadata_lists_every_signature(channel):
    sigs = client.metadata(channel, "tiny")
    assert {"serving_default", "embed", "greet", "metadata"} <= set(sigs)
    assert client.describe(sigs["serving_default"]) == {
        "inputs": {"x": ("float32", (None, None))}, "outputs": {"y": ("float32", (None, None))}}
    embed = client.describe(sigs["embed"])
    assert embed["inputs"] == {"codes": ("int32", (None, None)), "gain": ("float32", (None, 2))}
    assert client.describe(sigs["metadata"]) == {
        "inputs": {}, "outputs": {"codebook_size": ("int32", ()), "info": ("string", ())}}


def test_status_available(channel):
    assert client.status(channel, "tiny") == [
        {"version": 1, "state": "AVAILABLE", "error_code": "OK", "error_message": ""}]
    stub = model_service_pb2_grpc.ModelServiceStub(channel)
    response = stub.GetModelStatus(get_model_status_pb2.GetModelStatusRequest(
        model_spec=model_pb2.ModelSpec(name="tiny", version_label="stable")))
    assert response.model_version_status[0].state == \
        get_model_status_pb2.ModelVersionStatus.AVAILABLE


@pytest.mark.parametrize("signature,inputs", [
    ("serving_default", {"x": X}),
    ("embed", {"codes": CODES, "gain": GAIN}),
    ("greet", {"name": NAMES}),
    ("metadata", {}),
])
def test_predict_matches_in_process(channel, in_process, signature, inputs):
    got = client.predict(channel, "tiny", inputs, signature=signature)
    want = {k: v.numpy() for k, v in in_process[signature](
        **{k: tf.constant(v) for k, v in inputs.items()}).items()}
    assert got.keys() == want.keys()
    for key in want:
        np.testing.assert_array_equal(got[key], want[key])


def test_predict_response_spec_and_output_filter(channel):
    response = predict_stub(channel).Predict(request({"x": X}, version=1, output_filter=["y"]))
    assert (response.model_spec.name, response.model_spec.version.value,
            response.model_spec.signature_name) == ("tiny", 1, "serving_default")
    assert list(response.outputs) == ["y"]
    response = predict_stub(channel).Predict(request({"x": X}, label="stable"))
    assert response.model_spec.version.value == 1


# --- REST ---------------------------------------------------------------------------------


def test_rest_matches_grpc(server, channel):
    grpc_y = client.predict(channel, "tiny", {"x": X})["y"]
    status, body = rest(server, "/v1/models/tiny:predict", {"instances": X.tolist()})
    assert status == 200 and np.allclose(body["predictions"], grpc_y, rtol=1e-6)
    status, body = rest(server, "/v1/models/tiny/versions/1:predict", {"inputs": {"x": X.tolist()}})
    assert status == 200 and np.allclose(body["outputs"], grpc_y, rtol=1e-6)

    grpc_emb = client.predict(channel, "tiny", {"codes": CODES, "gain": GAIN}, "embed")["emb"]
    rows = [{"codes": c.tolist(), "gain": g.tolist()} for c, g in zip(CODES, GAIN)]
    status, body = rest(server, "/v1/models/tiny:predict",
                        {"signature_name": "embed", "instances": rows})
    assert status == 200 and np.allclose(body["predictions"], grpc_emb)

    status, body = rest(server, "/v1/models/tiny:predict",
                        {"signature_name": "greet", "inputs": ["ada", {"b64": "YsOp"}]})
    assert status == 200 and body["outputs"] == ["hello ada", "hello bé"]
    status, body = rest(server, "/v1/models/tiny/labels/stable:predict",
                        {"signature_name": "metadata", "inputs": {}})
    assert status == 200 and body["outputs"] == {"codebook_size": CODEBOOK, "info": "toy"}


def test_rest_status_and_metadata(server):
    status, body = rest(server, "/v1/models/tiny")
    assert status == 200 and body == {"model_version_status": [
        {"version": "1", "state": "AVAILABLE",
         "status": {"error_code": "OK", "error_message": ""}}]}
    status, body = rest(server, "/v1/models/tiny/versions/1/metadata")
    assert status == 200 and body["model_spec"]["version"] == "1"
    sig = body["metadata"]["signature_def"]["signature_def"]["embed"]
    assert sig["inputs"]["gain"]["dtype"] == "DT_FLOAT"
    assert [d["size"] for d in sig["inputs"]["gain"]["tensor_shape"]["dim"]] == ["-1", "2"]


@pytest.mark.parametrize("path,body,code,needle", [
    ("/v1/models/tiny:predict", b"{not json", 400, "not valid JSON"),
    ("/v1/models/tiny:predict", {"instances": [[1.0]], "inputs": [[1.0]]}, 400, "exactly one"),
    ("/v1/models/tiny:predict", {"instances": [[1.0, 2.0], [3.0]]}, 400, "'x'"),
    ("/v1/models/tiny:predict", {"signature_name": "embed",
                                 "inputs": {"codes": [[1.5]], "gain": [[1, 1]]}}, 400, "'codes'"),
    ("/v1/models/tiny:predict", {"signature_name": "embed",
                                 "inputs": {"codes": [[99]], "gain": [[1, 1]]}}, 400, "'codes'"),
    ("/v1/models/tiny:predict", {"inputs": {"x": [[1.0]], "z": [1]}}, 400, "'z'"),
    ("/v1/models/tiny:predict", {"signature_name": "nope", "inputs": [[1.0]]}, 404, "'nope'"),
    ("/v1/models/other:predict", {"inputs": [[1.0]]}, 404, "'other'"),
    ("/v1/models/tiny/versions/9", None, 404, "version 9"),
    ("/v2/whatever", None, 404, "malformed request path"),
    ("/v1/models/tiny:predict", b"[" + b"1.0," * 400_000 + b"1.0]", 400, "over the limit"),
])
def test_rest_rejects_malformed(server, channel, path, body, code, needle):
    status, answer = rest(server, path, body)
    assert status == code and needle in answer["error"], answer
    assert_healthy(channel)


# --- malformed gRPC requests --------------------------------------------------------------

def _metadata_request(fields):
    return get_model_metadata_pb2.GetModelMetadataRequest(
        model_spec=model_pb2.ModelSpec(name="tiny"), metadata_field=fields)


MALFORMED = {
    "unknown model": (request({"x": X}, model="nope"), NOT_FOUND, "'nope'"),
    "unknown version": (request({"x": X}, version=7), NOT_FOUND, "version 7"),
    "unknown label": (request({"x": X}, label="canary"), NOT_FOUND, "'canary'"),
    "unknown signature": (request({"x": X}, signature="bogus"), NOT_FOUND, "'bogus'"),
    "no model name": (request({"x": X}, model=""), INVALID, "name is required"),
    "wrong dtype": (request({"x": X.astype(np.int32)}), INVALID, "input 'x'"),
    "wrong rank": (request({"x": X[0]}), INVALID, "rank"),
    "wrong fixed dim": (request({"codes": CODES, "gain": np.ones((2, 3), np.float32)},
                                "embed"), INVALID, "input 'gain'"),
    "missing input": (request({"codes": CODES}, "embed"), INVALID, "missing input 'gain'"),
    "extra input": (request({"x": X, "z": X}), INVALID, "unknown input 'z'"),
    "empty tensor": (request({"x": np.zeros((0, 3), np.float32)}), INVALID, "empty"),
    "unknown rank": (request({"x": tensor_pb2.TensorProto(
        dtype=types_pb2.DT_FLOAT, tensor_shape=tensor_shape_pb2.TensorShapeProto(
            unknown_rank=True))}), INVALID, "fully defined"),
    "batch over limit": (request({"x": np.ones((17, 2), np.float32)}), INVALID,
                         "batch size 17"),
    "too many elements": (request({"x": raw_tensor(types_pb2.DT_FLOAT, [1, 200_000],
                                                   float_val=[1.0])}), INVALID, "elements"),
    "length over model limit": (request({"codes": np.zeros((1, 33), np.int32),
                                         "gain": GAIN[:1]}, "embed"), INVALID,
                                "'codes' of signature 'embed': dimension 1 is 33"),
    "length over operator limit": (request({"x": np.ones((1, 65), np.float32)}), INVALID,
                                   "dimension 1 is 65, over the limit 64"),
    "code outside codebook": (request({"codes": CODES + 1, "gain": GAIN}, "embed"), INVALID,
                              "input 'codes' of signature 'embed': value 16"),
    "negative code": (request({"codes": -CODES, "gain": GAIN}, "embed"), INVALID,
                      "input 'codes'"),
    "non-finite value": (request({"x": np.array([[1.0, np.nan]], np.float32)}), INVALID,
                         "non-finite"),
    "truncated content": (request({"x": raw_tensor(types_pb2.DT_FLOAT, [2, 3],
                                                   tensor_content=b"\0" * 20)}), INVALID,
                          "input 'x' of signature 'serving_default': tensor_content"),
    "oversized request": (request({"x": np.ones((1, 90_000), np.float32)}), INVALID,
                          "largest input 'x'"),
    "over transport limit": (request({"x": np.ones((2, 99_999), np.float32)}),
                             grpc.StatusCode.RESOURCE_EXHAUSTED, ""),
    "unknown output": (request({"x": X}, output_filter=["nope"]), INVALID, "'nope'"),
    "batch sizes disagree at run time": (request({"codes": CODES, "gain": np.ones(
        (3, 2), np.float32)}, "embed"), INVALID, "signature 'embed'"),
    "refused by a Python check": (request({"name": np.array([b"forbidden"], object)}, "greet"),
                                  INVALID, "input 'name'"),
    "metadata without field": (_metadata_request([]), INVALID, "metadata_field"),
    "metadata unknown field": (_metadata_request(["weights"]), INVALID, "'weights'"),
}


@pytest.mark.parametrize("case", list(MALFORMED))
def test_malformed_request_is_refused(channel, case):
    req, code, needle = MALFORMED[case]
    stub = predict_stub(channel)
    method = stub.GetModelMetadata if case.startswith("metadata") else stub.Predict
    with pytest.raises(grpc.RpcError) as err:
        method(req, timeout=30)
    assert err.value.code() == code, err.value.details()
    assert needle in err.value.details()
    assert_healthy(channel)


def test_status_of_unknown_version_is_not_found(channel):
    with pytest.raises(client.ServingError) as err:
        client.status(channel, "tiny", version=5)
    assert err.value.code == NOT_FOUND


# --- concurrency --------------------------------------------------------------------------


def _hammer(channel, threads, per_thread, bad_every=5):
    """Mixed good and bad requests from many threads; returns unexpected failures."""
    failures = []

    def worker(seed):
        rng = np.random.default_rng(seed)
        for i in range(per_thread):
            try:
                if i % bad_every == bad_every - 1:
                    with pytest.raises(client.ServingError):
                        client.predict(channel, "tiny", {"x": X[0]})
                elif i % 2:
                    codes = rng.integers(0, CODEBOOK, (1, 5), dtype=np.int32)
                    out = client.predict(channel, "tiny", {"codes": codes, "gain": GAIN[:1]},
                                         "embed")
                    assert out["emb"].shape == (1, 5, 4)
                else:
                    x = rng.standard_normal((2, 8)).astype(np.float32)
                    np.testing.assert_allclose(client.predict(channel, "tiny", {"x": x})["y"],
                                               x * 2)
            except BaseException as e:  # noqa: BLE001 - collected for the assertion
                failures.append(repr(e))

    pool = [threading.Thread(target=worker, args=(s,)) for s in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    return failures


def test_concurrent_clients(channel):
    assert _hammer(channel, threads=8, per_thread=20) == []
    assert_healthy(channel)


def test_batching_merges_concurrent_requests(versions, tmp_path):
    config = tmp_path / "batching.config"
    config.write_text("max_batch_size { value: 8 } batch_timeout_micros { value: 20000 } "
                      "num_batch_threads { value: 1 } allowed_batch_sizes: 4 "
                      "allowed_batch_sizes: 8")
    srv = start_server(tmp_path, versions, batching_config=str(config))
    try:
        with client.connect(srv.target) as ch:
            assert _hammer(ch, threads=8, per_thread=6, bad_every=3) == []
        assert srv.batcher.stats["requests"] > srv.batcher.stats["batches"] > 0
    finally:
        srv.stop()


def test_batch_with_a_failing_request_fails_alone():
    class Flaky:
        def run(self, signature, arrays):
            if (arrays["x"] < 0).any():
                raise invalid("input 'x': negative")
            return {"y": arrays["x"] * 2}

    spec = SignatureSpec("f", {"x": TensorSpec("x", tf.float32, (None,))},
                         {"y": TensorSpec("y", tf.float32, (None,))})
    batcher = Batcher(BatchingOptions(max_batch_size=4, batch_timeout_micros=50_000,
                                      num_batch_threads=1))
    results = {}

    def call(i):
        try:
            results[i] = batcher(Flaky(), spec, {"x": np.array([i - 1.0], np.float32)})
        except Exception as e:  # noqa: BLE001
            results[i] = e

    threads = [threading.Thread(target=call, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    batcher.stop()
    assert isinstance(results[0], Exception)
    assert [results[i]["y"][0] for i in (1, 2, 3)] == [0.0, 2.0, 4.0]


# --- versions -----------------------------------------------------------------------------


def _wait_for(predicate, timeout=30.0):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


def test_new_versions_are_picked_up_and_old_ones_unloaded(versions, tmp_path):
    srv = start_server(tmp_path, versions, rest_port=0)
    base = tmp_path / "base"
    try:
        with client.connect(srv.target) as ch:
            # A push: written under a temporary name, then renamed into place.
            shutil.copytree(versions / "v2", base / "2.tmp")
            time.sleep(0.5)
            assert [s["version"] for s in client.status(ch, "tiny")] == [1]
            os.rename(base / "2.tmp", base / "2")
            _wait_for(lambda: [(s["version"], s["state"]) for s in client.status(ch, "tiny")]
                      == [(2, "AVAILABLE"), (1, "END")])
            np.testing.assert_allclose(client.predict(ch, "tiny", {"x": X})["y"], X * 3)
            with pytest.raises(client.ServingError, match="version 1 is not available"):
                client.predict(ch, "tiny", {"x": X}, version=1)

            # An incomplete copy (no saved_model.pb yet) is not a version.
            shutil.copytree(versions / "v1" / "variables", base / "3" / "variables")
            # A broken version: reported, while version 2 keeps serving.
            shutil.copytree(versions / "v1", base / "4")
            (base / "4" / "saved_model.pb").write_bytes(b"not a SavedModel")
            _wait_for(lambda: client.status(ch, "tiny")[0]["version"] == 4)
            _wait_for(lambda: client.status(ch, "tiny")[0]["state"] == "END")
            broken = client.status(ch, "tiny", version=4)[0]
            assert broken["error_code"] == "UNKNOWN"
            assert "failed to load version 4" in broken["error_message"]
            assert 3 not in [s["version"] for s in client.status(ch, "tiny")]
            assert sorted(scan_versions(str(base))) == [1, 2, 4]
            np.testing.assert_allclose(client.predict(ch, "tiny", {"x": X})["y"], X * 3)
    finally:
        srv.stop()


def restored_values(servable):
    """(scale, table) as the served graph holds them: `embed` of every code with gain 1 and
    offset 0 is the table, `serving_default` of 1 the scale."""
    codes = np.arange(CODEBOOK, dtype=np.int32)[None]
    table = servable.run("embed", {"codes": codes, "gain": np.array([[1, 0]], np.float32)})
    scale = servable.run("serving_default", {"x": np.ones([1, 1], np.float32)})
    return scale["y"][0, 0], table["emb"][0]


def restore_keys(servable):
    """The checkpoint keys of the RestoreV2 ops the servable added to restore each variable."""
    return [[k.decode() for k in tf.get_static_value(op.inputs[1])]
            for op in servable._session.graph.get_operations()
            if op.type == "RestoreV2" and op.name.startswith("restore_each_variable/")]


@pytest.mark.parametrize("how", ["grouped", "one per run", "whole restore op"])
def test_servable_restores_each_variable_and_names_damaged_files(versions, tmp_path,
                                                                 monkeypatch, how):
    """Servable restores the variables one by one (about the model's size in memory, not
    twice it): one RestoreV2 per variable, run in groups, with the values TF's own load
    gives; where the restore op is laid out otherwise, the whole op runs, with the same
    values. Either way a damaged variables file is named."""
    import serving.saved_model_session as servable_module

    if how == "one per run":
        monkeypatch.setattr(servable_module, "RESTORE_GROUP_BYTES", 1)
    if how == "whole restore op":
        monkeypatch.setattr(servable_module, "variable_restores", lambda meta_graph: None)
    path = str(versions / "v2")
    servable = Servable(path, 2)
    expected = tf.saved_model.load(path)
    scale, table = restored_values(servable)
    assert scale == expected.scale.numpy() == 3.0
    np.testing.assert_array_equal(table, expected.table.numpy())
    prefix = os.path.join(path, "variables", "variables")
    keys = [k for k, _ in tf.train.list_variables(prefix) if "VARIABLE_VALUE" in k]
    assert len(keys) == 2
    per_variable = sorted(restore_keys(servable))
    assert per_variable == ([] if how == "whole restore op" else [[k] for k in sorted(keys)])

    shutil.copytree(versions / "v1", tmp_path / "1")
    [data] = (tmp_path / "1" / "variables").glob("variables.data-*")
    data.write_bytes(data.read_bytes()[:8])
    with pytest.raises(JukeboxError, match=r"cannot restore checkpoint .*1/variables/variables"
                                           r".*damaged or incomplete\. Export this version"):
        Servable(str(tmp_path / "1"), 1)


def test_restore_mapping_reads_the_restore_function(versions):
    """The restore op's function mapped back to the main graph: each variable's key, dtype
    and VarHandleOp."""
    from serving.saved_model_session import variable_restores
    from serving.servable import read_meta_graph

    meta_graph = read_meta_graph(str(versions / "v1"))
    nodes = {n.name: n for n in meta_graph.graph_def.node}
    restores = sorted(variable_restores(meta_graph))
    assert [(r.key, r.slice, tf.as_dtype(r.dtype)) for r in restores] == [
        ("scale/.ATTRIBUTES/VARIABLE_VALUE", "", tf.float32),
        ("table/.ATTRIBUTES/VARIABLE_VALUE", "", tf.float32)]
    handles = [nodes[r.handle.split(":")[0]] for r in restores]
    assert [h.op for h in handles] == ["VarHandleOp"] * 2
    assert [[d.size for d in h.attr["shape"].shape.dim] for h in handles] == [[], [CODEBOOK, 4]]


class Ops(tf.Module):
    """A table filled from an asset file by the init op, and a signature that reaches an XLA
    function only through a tf.cond branch."""

    def __init__(self, vocab):
        super().__init__()
        self.words = tf.lookup.StaticHashTable(tf.lookup.TextFileInitializer(
            vocab, tf.string, tf.lookup.TextFileIndex.WHOLE_LINE, tf.int64,
            tf.lookup.TextFileIndex.LINE_NUMBER), default_value=-1)
        self.offset = tf.Variable(1.0)

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
    def lookup(self, word):
        return {"index": self.words.lookup(word)}

    @tf.function(jit_compile=True)
    def _square(self, x):
        return x * x + self.offset

    @tf.function(input_signature=[tf.TensorSpec([None], tf.float32)])
    def plain(self, x):
        return {"y": x * x + self.offset}

    @tf.function(input_signature=[tf.TensorSpec([None], tf.float32)])
    def xla(self, x):
        return {"y": tf.cond(tf.size(x) > 0, lambda: self._square(x), lambda: x)}


@pytest.fixture(scope="module")
def ops_version(tmp_path_factory):
    """The Ops SavedModel, moved away from where it was exported, its source vocabulary gone:
    the init op must be fed the asset's new path."""
    tmp = tmp_path_factory.mktemp("ops")
    (tmp / "vocab.txt").write_text("zero\none\ntwo\n")
    module = Ops(str(tmp / "vocab.txt"))
    tf.saved_model.save(module, str(tmp / "exported"), signatures={
        "lookup": module.lookup, "plain": module.plain, "xla": module.xla})
    (tmp / "vocab.txt").unlink()
    os.rename(tmp / "exported", tmp / "1")
    return str(tmp / "1")


def test_servable_runs_the_init_op_with_its_assets(ops_version):
    servable = Servable(ops_version, 1)
    out = servable.run("lookup", {"word": np.array([b"two", b"zero", b"many"], object)})
    np.testing.assert_array_equal(out["index"], [2, 0, -1])


def test_servable_finds_the_signatures_that_need_xla(ops_version):
    """`compiled` follows function references (here a tf.cond branch); with XLA off those
    signatures fail as on stock TF Serving, the others run."""
    x = np.array([1.0, 2.0], np.float32)
    servable = Servable(ops_version, 1)
    assert servable.compiled == {"xla"}
    np.testing.assert_array_equal(servable.run("xla", {"x": x})["y"], [2.0, 5.0])
    off = Servable(ops_version, 1, xla=False)
    with pytest.raises(RequestError, match="XLA compilation disabled") as e:
        off.run("xla", {"x": x})
    assert e.value.code == grpc.StatusCode.INTERNAL
    np.testing.assert_array_equal(off.run("plain", {"x": x})["y"], [2.0, 5.0])


# --- the command ---------------------------------------------------------------------------


@pytest.mark.slow
def test_cli_serves_until_sigterm(versions, tmp_path):
    (tmp_path / "base").mkdir()
    shutil.copytree(versions / "v1", tmp_path / "base" / "1")
    config = write_config(tmp_path / "models.config", "base", 2)
    port, rest_port = portpicker.pick_unused_port(), portpicker.pick_unused_port()
    env = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.Popen([sys.executable, "-m", "serving", "--model-config", config,
                             "--port", str(port), "--rest-port", str(rest_port)],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)
    try:
        assert client.wait_until_available(f"127.0.0.1:{port}", "tiny", timeout=120) == 1
        out = client.predict(f"127.0.0.1:{port}", "tiny", {"x": X})
        np.testing.assert_allclose(out["y"], X * 2)
        proc.send_signal(signal.SIGTERM)
        log, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, log
    assert "server stopped" in log
