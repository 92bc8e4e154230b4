"""The exported Jukebox model served by `serving/` and reached through the stock TF Serving
gRPC client: metadata lists every signature; encode -> decode equals the in-process VQ-VAE;
`sample` is deterministic per seed; a version pushed while serving is picked up; malformed
requests get the right status and a message naming the input, and the server keeps serving;
REST equals gRPC; `jukebox-tf generate` writes a WAV and its spectrogram.

The tiny runs and their export come from tests/test_export.py's fixtures (one export for the
module). The version push is a second export into the served base while the server runs.
"""

import argparse
import contextlib
import io
import json
import os
import time
import urllib.request

import grpc
import numpy as np
import portpicker
import pytest
import tensorflow as tf
from tensorflow_serving.apis import model_pb2, predict_pb2, prediction_service_pb2_grpc

from serving import client
from serving.options import Limits, ServerOptions
from serving.server import ModelServer
from serving.toy_model import write_model_config
from test_export import AUDIO, RATE, SIGNATURES, export_args, runs  # noqa: F401 (fixture)

MAX_BATCH = 4
MAX_REQUEST_BYTES = 1 << 20


@pytest.fixture(scope="module")
def exported(runs):  # noqa: F811
    from jukebox_tf.cli import export as export_cmd

    base = runs["root"] / "served_models" / "jukebox"
    args = export_args("--prior", runs["top"], "--upsamplers", runs["up0"], runs["up1"],
                       "--out", base, "--max-seconds", 5, "--no-warmup")
    with contextlib.redirect_stderr(io.StringIO()):
        export_cmd.check_args(args)
        loaded = export_cmd.load_runs(args)
        result = export_cmd.export_runs(args, loaded)
    return {"base": base, "path": result.path, "hierarchy": loaded}


@pytest.fixture(scope="module")
def server(exported, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("jukebox_served")
    config = write_model_config(str(tmp / "models.config"), "jukebox", str(exported["base"]))
    srv = ModelServer(config, ServerOptions(
        port=portpicker.pick_unused_port(), rest_port=portpicker.pick_unused_port(),
        poll_seconds=0.2, grace_seconds=2.0,
        limits=Limits(max_batch_size=MAX_BATCH, max_request_bytes=MAX_REQUEST_BYTES))).start()
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def channel(server):
    with client.connect(server.target) as ch:
        client.wait_until_available(ch, "jukebox")
        yield ch


def strings(*values):
    return np.array([v.encode() for v in values], dtype=object)


def row(value, dtype, n=1):
    return np.full([n], value, dtype)


def sample_inputs(**overrides):
    return {"artist": strings("ann"), "genres": strings("rock"), "lyrics": strings("la la"),
            "total_seconds": row(0.0, np.float32), "offset_seconds": row(0.0, np.float32),
            "n_tokens": row(12, np.int32), "temperature": row(0.9, np.float32),
            "top_k": row(0, np.int32), "top_p": row(0.0, np.float32), "seed": row(5, np.int64),
            "prime": np.zeros([1, 0], np.int32), **overrides}


CODES = np.random.default_rng(4).integers(0, 64, (2, 6)).astype(np.int32)
DECODE = {"codes": CODES, "level": row(0, np.int32, 2)}
ENCODE = {"audio": AUDIO, "sample_rate": row(RATE, np.int32, 2)}
METADATA = {"rows": row(0, np.int32)}


def assert_healthy(channel):
    out = client.predict(channel, "jukebox", DECODE, signature="decode")
    assert out["audio"].shape == (2, 6 * 8) and np.isfinite(out["audio"]).all()


def test_metadata_lists_every_signature(channel, exported):
    sigs = client.metadata(channel, "jukebox")
    assert set(SIGNATURES) | {"serving_default"} <= set(sigs)
    described = client.describe(sigs["decode"])
    assert described["inputs"]["codes"][0] == "int32"
    meta = json.loads(client.predict(channel, "jukebox", METADATA, signature="metadata")
                      ["metadata_json"][0])
    assert meta["sample_rate"] == RATE and meta["hop_lengths"] == [8, 32, 128]


def test_encode_decode_round_trip_equals_in_process(channel, exported):
    vqvae = exported["hierarchy"].vqvae
    out = client.predict(channel, "jukebox", ENCODE, signature="encode")
    expected = [c.numpy() for c in vqvae.encode(AUDIO[:, :896, None])]
    for level, codes in enumerate(expected):
        np.testing.assert_array_equal(out[f"codes_l{level}"], codes)
    for level in range(3):
        audio = client.predict(channel, "jukebox", {"codes": out[f"codes_l{level}"],
                                                    "level": row(level, np.int32, 2)},
                               signature="decode")["audio"]
        np.testing.assert_allclose(
            audio, vqvae.decode(expected[level], level).numpy()[..., 0], rtol=1e-5, atol=1e-6)


@pytest.mark.slow
def test_sample_with_a_seed_is_deterministic(channel):
    first = client.predict(channel, "jukebox", sample_inputs(), signature="sample")["codes"]
    again = client.predict(channel, "jukebox", sample_inputs(), signature="sample")["codes"]
    other = client.predict(channel, "jukebox", sample_inputs(seed=row(6, np.int64)),
                           signature="sample")["codes"]
    assert first.shape == (1, 12)
    np.testing.assert_array_equal(first, again)
    assert (first != other).any()


def rest_predict(server, body: dict, key: str) -> np.ndarray:
    req = urllib.request.Request(
        f"http://127.0.0.1:{server.rest_port}/v1/models/jukebox:predict",
        data=json.dumps(body).encode(), method="POST")
    with urllib.request.urlopen(req, timeout=60) as r:
        return np.array(json.loads(r.read())[key], np.float32)


def test_rest_predict_equals_grpc(server, channel):
    grpc_out = client.predict(channel, "jukebox", DECODE, signature="decode")["audio"]
    columns = rest_predict(server, {"signature_name": "decode", "inputs": {
        "codes": CODES.tolist(), "level": [0, 0]}}, "outputs")
    np.testing.assert_allclose(columns, grpc_out, rtol=1e-6, atol=1e-7)
    # The row format: every input has the batch dimension, settings included.
    rows = rest_predict(server, {"signature_name": "decode", "instances": [
        {"codes": codes.tolist(), "level": 0} for codes in CODES]}, "predictions")
    np.testing.assert_allclose(rows, grpc_out, rtol=1e-6, atol=1e-7)


INVALID, NOT_FOUND = grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND
BAD = [  # (id, signature, inputs, model spec overrides, status, words in the message)
    ("wrong_dtype", "decode", {**DECODE, "codes": CODES.astype(np.float32)}, {}, INVALID,
     "codes"),
    ("wrong_rank", "decode", {**DECODE, "codes": CODES[0]}, {}, INVALID, "codes"),
    ("scalar_setting", "decode", {**DECODE, "level": np.int32(0)}, {}, INVALID, "level"),
    ("setting_rows_disagree", "decode", {**DECODE, "level": row(0, np.int32, 3)}, {}, INVALID,
     "level must have one row per sample"),
    ("missing_input", "decode", {"codes": CODES}, {}, INVALID, "level"),
    ("extra_input", "decode", {**DECODE, "bogus": np.int32(1)}, {}, INVALID, "bogus"),
    ("code_above_codebook", "decode", {**DECODE, "codes": CODES + 64}, {}, INVALID, "codes"),
    ("negative_code", "decode", {**DECODE, "codes": CODES - 64}, {}, INVALID, "codes"),
    ("bad_level", "decode", {**DECODE, "level": np.array([0, 7], np.int32)}, {}, INVALID,
     "level"),
    ("bad_sample_rate", "encode", {**ENCODE, "sample_rate": row(16000, np.int32, 2)}, {},
     INVALID, "sample_rate"),
    ("too_many_tokens", "sample", sample_inputs(n_tokens=row(10**8, np.int32)), {}, INVALID,
     "n_tokens"),
    ("zero_tokens", "sample", sample_inputs(n_tokens=row(0, np.int32)), {}, INVALID,
     "n_tokens"),
    ("bad_top_p", "sample", sample_inputs(top_p=row(1.5, np.float32)), {}, INVALID, "top_p"),
    ("batch_too_large", "decode", {**DECODE, "codes": np.zeros([MAX_BATCH + 1, 2], np.int32)},
     {}, INVALID, "codes"),
    ("empty_tensor", "encode", {**ENCODE, "audio": np.zeros([1, 0], np.float32)}, {}, INVALID,
     "audio"),
    ("nan_audio", "encode", {**ENCODE, "audio": np.full([1, 1000], np.nan, np.float32)}, {},
     INVALID, "audio"),
    ("oversized", "encode", {**ENCODE, "audio": np.zeros([1, MAX_REQUEST_BYTES // 4 + 8],
                                                         np.float32)}, {}, INVALID, "audio"),
    ("unknown_signature", "nope", DECODE, {}, NOT_FOUND, "nope"),
    ("unknown_model", "decode", DECODE, {"name": "nobody"}, NOT_FOUND, "nobody"),
    ("unknown_version", "decode", DECODE, {"version": 99}, NOT_FOUND, "99"),
]


@pytest.mark.parametrize("case", BAD, ids=[c[0] for c in BAD])
def test_malformed_request_is_refused(channel, case):
    _, signature, inputs, spec, code, words = case
    model_spec = model_pb2.ModelSpec(name=spec.get("name", "jukebox"), signature_name=signature)
    if "version" in spec:
        model_spec.version.value = spec["version"]
    request = predict_pb2.PredictRequest(model_spec=model_spec)
    for name, value in inputs.items():
        request.inputs[name].CopyFrom(tf.make_tensor_proto(value))
    stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
    with pytest.raises(grpc.RpcError) as info:
        stub.Predict(request, timeout=60)
    assert info.value.code() == code, info.value.details()
    assert words in info.value.details()
    assert_healthy(channel)


@pytest.mark.slow
def test_new_version_is_picked_up_while_serving(server, channel, exported):
    from jukebox_tf.cli import export as export_cmd

    before = client.predict(channel, "jukebox", DECODE, signature="decode")["audio"]
    # A second `jukebox-tf export` into the served base: it numbers the version and renames it
    # into place, and the version is baked into the SavedModel (a copy would still say 1).
    args = export_args("--out", exported["base"], "--max-seconds", 5, "--no-warmup")
    with contextlib.redirect_stderr(io.StringIO()):
        pushed = export_cmd.export_runs(args, exported["hierarchy"])
    assert pushed.version == 2
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        states = {s["version"]: s["state"] for s in client.status(channel, "jukebox")}
        if states == {2: "AVAILABLE", 1: "END"}:  # the policy serves the latest 1 version
            break
        time.sleep(0.2)
    assert states == {2: "AVAILABLE", 1: "END"}
    assert int(client.predict(channel, "jukebox", METADATA, signature="metadata")
               ["version"][0]) == 2
    with pytest.raises(client.ServingError, match="version 1 is not available"):
        client.predict(channel, "jukebox", METADATA, signature="metadata", version=1)
    # The same runs: the new version decodes as the old one did.
    np.testing.assert_allclose(
        client.predict(channel, "jukebox", DECODE, signature="decode", version=2)["audio"],
        before)
    assert_healthy(channel)


def assert_same_rows(got: dict, alone: dict):
    """A result of a merged batch against the request's result alone: equal up to the
    alone result's length, padded after it (codes with -1, audio with 0)."""
    for name, value in alone.items():
        part = got[name]
        assert part.shape[0] == value.shape[0] and part.shape[1] >= value.shape[1], name
        pad = -1 if value.dtype == np.int32 else 0.0
        assert (part[:, value.shape[1]:] == pad).all(), name
        np.testing.assert_allclose(part[:, :value.shape[1]], value, rtol=1e-5, atol=1e-6,
                                   err_msg=name)


@pytest.mark.slow
def test_batching_merges_concurrent_jukebox_requests(exported, channel, tmp_path):
    """The shipped serving/batching.config on the exported model: concurrent requests that
    differ in level, seed, settings and n_tokens are merged, and each gets what it gets from
    a server without batching."""
    import concurrent.futures

    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    config = write_model_config(str(tmp_path / "models.config"), "jukebox",
                                str(exported["base"]))
    requests = []
    for i in range(16):
        if i % 2:
            requests.append(("decode", {"codes": CODES[i % 2:i % 2 + 1],
                                        "level": row((0, 2)[i // 2 % 2], np.int32)}))
        else:
            requests.append(("sample", sample_inputs(
                seed=row(i, np.int64), n_tokens=row((12, 8)[i // 2 % 2], np.int32),
                temperature=row(0.5 + i / 16, np.float32), top_k=row(i % 5, np.int32))))
    alone = [client.predict(channel, "jukebox", inputs, signature=sig, timeout=120)
             for sig, inputs in requests]
    srv = ModelServer(config, ServerOptions(
        port=portpicker.pick_unused_port(), rest_port=0, poll_seconds=0.2,
        grace_seconds=2.0, batching_config=os.path.join(repo, "serving", "batching.config"),
        limits=Limits(max_batch_size=MAX_BATCH))).start()
    try:
        with client.connect(srv.target) as ch:
            client.wait_until_available(ch, "jukebox")
            for _ in range(3):  # until some requests met in the queue
                with concurrent.futures.ThreadPoolExecutor(8) as pool:
                    got = list(pool.map(lambda r: client.predict(ch, "jukebox", r[1],
                                                                 signature=r[0], timeout=120),
                                        requests))
                for result, expected in zip(got, alone):
                    assert_same_rows(result, expected)
                if srv.batcher.stats["requests"] > srv.batcher.stats["batches"]:
                    break
        assert srv.batcher.stats["requests"] > srv.batcher.stats["batches"] > 0
    finally:
        srv.stop()


def generate_args(*argv):
    from jukebox_tf.cli import generate

    parser = argparse.ArgumentParser(prog="jukebox-tf")
    generate.register(parser.add_subparsers(dest="command"))
    return parser.parse_args(["generate", *map(str, argv)])


@pytest.mark.slow
def test_generate_command_writes_wav_and_png(server, channel, tmp_path):
    import soundfile

    out = tmp_path / "clip.wav"
    args = generate_args("--server", server.target, "--model", "jukebox", "--artist", "ann",
                         "--genre", "rock", "--lyrics", "la la", "--seconds", 0.05,
                         "--seed", 3, "-o", out)
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        assert args.func(args) == 0
    audio, rate = soundfile.read(str(out))
    assert rate == RATE and len(audio) == round(0.05 * RATE)
    assert (tmp_path / "clip.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    for step in ("sample level 2", "upsample level 1", "upsample level 0", "decode level 0"):
        assert step in err.getvalue()

    # With a prompt: encoded by the server, its top-level codes prime the sample.
    from jukebox_tf.audio.load import write_wav

    prompt = write_wav(str(tmp_path / "prompt.wav"), AUDIO[0] * 0.5, RATE)
    primed = tmp_path / "primed.wav"
    args = generate_args("--server", server.target, "--seconds", 0.1, "--prompt", prompt,
                         "--prompt-seconds", 0.04, "--seed", 3, "-o", primed)
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        assert args.func(args) == 0
    assert "encode prompt" in err.getvalue()
    audio, rate = soundfile.read(str(primed))
    assert rate == RATE and len(audio) == round(0.1 * RATE)
    assert (tmp_path / "primed.png").exists()


def upsample_part_inputs(codes, level, total, prime, min_tokens, **overrides):
    n = len(codes)
    return {"codes": codes, "level": row(level, np.int32, n),
            "total_tokens": row(total, np.int32, n), "prime": prime,
            "min_tokens": np.broadcast_to(np.asarray(min_tokens, np.int32), [n]).copy(),
            "artist": strings(*["ann"] * n), "genres": strings(*["rock"] * n),
            "total_seconds": row(0.0, np.float32, n), "offset_seconds": row(0.0, np.float32, n),
            "temperature": row(0.9, np.float32, n), "top_k": row(0, np.int32, n),
            "top_p": row(0.0, np.float32, n), "seed": np.arange(5, 5 + n, dtype=np.int64),
            **overrides}


@pytest.mark.slow
def test_upsample_part_makes_upsample_window_by_window(channel):
    """upsample_part from where the prime ends to the window reaching min_tokens, waiting for
    codes of the level above it has not got (upper_needed says how many): joined, the parts
    are what one upsample call draws, rows with different min_tokens in one request each get
    what they get alone, and bad totals are refused with a message naming the input."""
    top = np.random.default_rng(6).integers(0, 64, (2, 20)).astype(np.int32)
    whole = {}
    for level, upper in ((1, top), (0, None)):
        upper = whole[1] if upper is None else upper
        whole[level] = client.predict(channel, "jukebox", {
            k: v for k, v in upsample_part_inputs(upper, level, 0, None, 0).items()
            if k not in ("total_tokens", "prime", "min_tokens")}, signature="upsample")["codes"]
    assert whole[1].shape == (2, 80) and whole[0].shape == (2, 320)

    def part(level, upper, prime, min_tokens, signature="upsample_part"):
        return client.predict(channel, "jukebox", upsample_part_inputs(
            upper, level, whole[level].shape[1], prime, min_tokens), signature=signature)

    empty = np.zeros([2, 0], np.int32)
    first = part(1, top, empty, 1)
    n = first["codes"].shape[1]
    assert n == 64 and (first["upper_needed"] == 20).all()  # windows of 64 at level 1
    np.testing.assert_array_equal(first["codes"], whole[1][:, :n])
    rest = part(1, top, first["codes"], 80)
    np.testing.assert_array_equal(rest["codes"], whole[1])
    assert (rest["upper_needed"] == 0).all()  # complete
    # Level 0 with no codes above yet: nothing made, and what its first window needs.
    waiting = part(0, empty, empty, 1)
    assert waiting["codes"].shape == (2, 0) and (waiting["upper_needed"] > 0).all()
    need = int(waiting["upper_needed"][0])
    made = empty
    while made.shape[1] < 320:
        out = part(0, whole[1][:, :need], made, made.shape[1] + 1, "upsample_part_xla")
        assert out["codes"].shape[1] > made.shape[1]
        made, need = out["codes"], max(need, int(out["upper_needed"][0]))
    np.testing.assert_array_equal(made, whole[0])
    # Two rows, two min_tokens: each row as alone, the shorter padded with -1.
    both = client.predict(channel, "jukebox", upsample_part_inputs(
        top, 1, 80, empty, [1, 80]), signature="upsample_part")["codes"]
    alone = client.predict(channel, "jukebox", upsample_part_inputs(
        top[1:], 1, 80, empty[1:], 80, seed=np.array([6], np.int64)),
        signature="upsample_part")["codes"]
    np.testing.assert_array_equal(both[1:], alone)
    np.testing.assert_array_equal(both[:1, :n], first["codes"][:1])
    assert (both[0, n:] == -1).all()
    for total, words in ((81, "multiple of"), (72, "longer than total_tokens")):
        with pytest.raises(client.ServingError, match=f"INVALID_ARGUMENT.*{words}"):
            client.predict(channel, "jukebox", upsample_part_inputs(top, 1, total, empty, 1),
                           signature="upsample_part")


@pytest.mark.slow
def test_generate_stream_writes_the_same_clip_as_it_comes(server, tmp_path):
    """generate --stream: the levels below the top window by window, the audio appended to
    OUT.partial.wav as it comes and renamed OUT.wav: the codes of generate without it, the
    audio within 16-bit rounding, and the time to the first second reported."""
    import soundfile

    from jukebox_tf.cli.generate import GenerateRequest, Progress, generate_clip, write_outputs

    clips, results = {}, {}
    for name, flags in (("whole", ()), ("stream", ("--stream",))):
        clips[name] = tmp_path / f"{name}.wav"
        args = generate_args("--server", server.target, "--seconds", 1.05, "--seed", 4,
                             "--artist", "ann", "-o", clips[name], *flags)
        err = io.StringIO()
        with contextlib.redirect_stderr(err):  # as `run`, keeping the codes
            results[name] = generate_clip(server.target, GenerateRequest.from_args(args),
                                          Progress(True, err))
            write_outputs(str(clips[name]), results[name], not results[name].get("streamed"))
    assert "upsample level 0 from 0/" in err.getvalue()
    assert "the first second of level-0 audio after" in err.getvalue()
    assert not os.path.exists(tmp_path / "stream.partial.wav")
    for level in (2, 1, 0):
        np.testing.assert_array_equal(results["stream"]["codes"][level],
                                      results["whole"]["codes"][level])
    np.testing.assert_allclose(results["stream"]["audio"], results["whole"]["audio"],
                               rtol=1e-4, atol=1e-5)
    streamed, rate = soundfile.read(str(clips["stream"]), dtype="int16")
    whole, _ = soundfile.read(str(clips["whole"]), dtype="int16")
    assert rate == RATE and len(streamed) == len(whole) == round(1.05 * RATE)
    assert np.abs(streamed.astype(int) - whole).max() <= 1
    assert (tmp_path / "stream.png").exists()
    from jukebox_tf.cli.generate import check_streamable
    from jukebox_tf.errors import JukeboxError

    with pytest.raises(JukeboxError, match="--stream needs a model exported with the "
                                           "upsample_part signature .*'old' has decode, sample"):
        check_streamable({"signatures": ["sample", "decode"]}, "old")


@pytest.mark.slow
def test_generate_falls_back_to_the_plain_signatures_when_the_server_has_xla_off(
        server, channel, exported, tmp_path):
    """`generate` samples through the *_xla twins; a server with XLA off (stock TF Serving's
    default) refuses them as stock does, and generate then uses the plain ones: the same
    audio. --no-xla asks for the plain ones at once."""
    import soundfile

    config = write_model_config(str(tmp_path / "models.config"), "jukebox",
                                str(exported["base"]))
    plain = ModelServer(config, ServerOptions(
        port=portpicker.pick_unused_port(), rest_port=0, poll_seconds=0.2, grace_seconds=2.0,
        xla=False)).start()
    try:
        with client.connect(plain.target) as ch:
            client.wait_until_available(ch, "jukebox")
            with pytest.raises(client.ServingError, match="INTERNAL: .*XLA compilation "
                                                          "disabled"):
                client.predict(ch, "jukebox", sample_inputs(), signature="sample_xla")
            np.testing.assert_array_equal(
                client.predict(ch, "jukebox", sample_inputs(), signature="sample")["codes"],
                client.predict(channel, "jukebox", sample_inputs(),
                               signature="sample_xla")["codes"])
        clips = {}
        for name, target, flags in (("xla", server.target, ()), ("off", plain.target, ()),
                                    ("plain", server.target, ("--no-xla",))):
            clips[name] = tmp_path / f"{name}.wav"
            args = generate_args("--server", target, "--seconds", 0.05, "--seed", 3, "-o",
                                 clips[name], *flags)
            err = io.StringIO()
            with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
                assert args.func(args) == 0
            compiled = [line for line in err.getvalue().splitlines() if "(XLA)" in line]
            assert len(compiled) == (3 if name == "xla" else 0), err.getvalue()
            assert ("the server has XLA off" in err.getvalue()) == (name == "off")
        audio = {name: soundfile.read(str(path))[0] for name, path in clips.items()}
        np.testing.assert_array_equal(audio["off"], audio["xla"])
        np.testing.assert_array_equal(audio["plain"], audio["xla"])
    finally:
        plain.stop()


def test_a_generate_request_has_the_commands_defaults():
    from jukebox_tf.cli.generate import GenerateRequest

    assert GenerateRequest.from_args(generate_args("--seconds", 1, "-o", "x.wav")) == (
        GenerateRequest(seconds=1.0, out="x.wav"))


def test_generate_reports_unreachable_server_and_unknown_model(server, tmp_path):
    from jukebox_tf.errors import JukeboxError

    dead = f"127.0.0.1:{portpicker.pick_unused_port()}"
    for target, model, needle in ((dead, "jukebox", "cannot reach a server"),
                                  (server.target, "nobody", "nobody")):
        args = generate_args("--server", target, "--model", model, "--seconds", 0.05,
                             "--timeout", 10, "--quiet", "-o", tmp_path / "x.wav")
        with pytest.raises(JukeboxError, match=needle):
            args.func(args)
    with pytest.raises(JukeboxError, match="--seconds"):
        args = generate_args("--seconds", -1, "-o", tmp_path / "x.wav")
        args.func(args)
