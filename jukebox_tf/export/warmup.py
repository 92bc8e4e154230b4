"""Small example requests, one per signature: TF Serving's warmup file
(`assets.extra/tf_serving_warmup_requests`, a TFRecord of PredictionLog protos it replays
when it loads a version, so the first real request does not pay for graph set-up), and the
inputs the tests and `jukebox-tf export --check` run."""

from __future__ import annotations

import os

import numpy as np

from jukebox_tf import storage
from jukebox_tf.codes.hierarchy import hop_ratio

WARMUP_FILE = os.path.join("assets.extra", "tf_serving_warmup_requests")


def example_inputs(meta: dict) -> dict[str, dict[str, np.ndarray]]:
    """{signature: {input: array}}: the smallest valid request of each signature of a model
    with this metadata (module.JukeboxModule.metadata_dict)."""
    rate, hops = meta["sample_rate"], meta["hop_lengths"]
    channels = meta["channels"]
    audio = np.sin(np.arange(hops[-1]) * 0.05).astype(np.float32)[None] * 0.1
    if channels > 1:
        audio = np.repeat(audio[..., None], channels, axis=-1)
    def row(value, dtype):
        return np.array([value], dtype)

    strings = {"artist": np.array([b""]), "genres": np.array([b""])}
    settings = {"temperature": row(1.0, np.float32), "top_k": row(0, np.int32),
                "top_p": row(0.0, np.float32), "seed": row(0, np.int64)}
    out = {
        "encode": {"audio": audio, "sample_rate": row(rate, np.int32)},
        "decode": {"codes": np.zeros([1, 1], np.int32), "level": row(0, np.int32)},
    }
    signatures = meta["signatures"]
    if "sample" in signatures:
        out["sample"] = {**strings, "lyrics": np.array([b""]),
                         "total_seconds": row(0.0, np.float32),
                         "offset_seconds": row(0.0, np.float32), "n_tokens": row(1, np.int32),
                         **settings, "prime": np.zeros([1, 0], np.int32)}
    if "upsample" in signatures:
        level = max(lv for lv in meta["prior_levels"] if lv < meta["levels"] - 1)
        out["upsample"] = {"codes": np.zeros([1, 1], np.int32), "level": row(level, np.int32),
                           **strings, "total_seconds": row(0.0, np.float32),
                           "offset_seconds": row(0.0, np.float32), **settings}
    if "upsample_part" in signatures:
        # One code of the level above, the first window of its level (hop ratio codes).
        out["upsample_part"] = {**out["upsample"], "total_tokens": row(
            hop_ratio(hops, level), np.int32), "prime": np.zeros([1, 0], np.int32),
            "min_tokens": row(1, np.int32)}
    if "generate" in signatures:
        out["generate"] = {**strings, "lyrics": np.array([b""]),
                           "seconds": row(hops[-1] / rate, np.float32),
                           "total_seconds": row(0.0, np.float32), **settings}
    out["metadata"] = {"rows": row(0, np.int32)}
    return out


def write_warmup(path: str, model_name: str, requests: dict[str, dict[str, np.ndarray]]) -> int:
    """Writes one PredictionLog per signature to `path`; returns how many."""
    import tensorflow as tf
    from tensorflow_serving.apis import model_pb2, predict_pb2, prediction_log_pb2

    storage.makedirs(os.path.dirname(path))
    with tf.io.TFRecordWriter(path) as writer:
        for signature, inputs in requests.items():
            request = predict_pb2.PredictRequest(
                model_spec=model_pb2.ModelSpec(name=model_name, signature_name=signature))
            for name, value in inputs.items():
                request.inputs[name].CopyFrom(tf.make_tensor_proto(value))
            log = prediction_log_pb2.PredictionLog(
                predict_log=prediction_log_pb2.PredictLog(request=request))
            writer.write(log.SerializeToString())
    return len(requests)


def read_warmup(path: str) -> list:
    """The PredictRequest protos of a warmup file, in order."""
    import tensorflow as tf
    from tensorflow_serving.apis import prediction_log_pb2

    out = []
    for record in tf.data.TFRecordDataset(path):
        log = prediction_log_pb2.PredictionLog.FromString(record.numpy())
        out.append(log.predict_log.request)
    return out
