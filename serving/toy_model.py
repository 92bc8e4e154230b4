"""A tiny SavedModel with Jukebox-shaped signatures, for tests, benchmarks and trying the
server before a real export exists:

* `serving_default`: x float32[?, ?] -> y = x * scale (audio-like);
* `embed`: codes int32[?, ?], gain float32[?, 2] -> emb float32[?, ?, 4] (codes index a
  codebook of CODEBOOK entries; `assets.extra/serving_limits.json` says so);
* `greet`: name string[?] -> greeting string[?];
* `metadata`: no inputs -> codebook_size int32[], info string[].
"""

from __future__ import annotations

import json
import os

import tensorflow as tf

from serving.servable import LIMITS_FILE

CODEBOOK = 16


class ToyModel(tf.Module):
    def __init__(self, scale: float):
        super().__init__()
        self.scale = tf.Variable(scale, dtype=tf.float32)
        self.table = tf.Variable(tf.reshape(tf.range(CODEBOOK * 4, dtype=tf.float32),
                                            [CODEBOOK, 4]))

    @tf.function(input_signature=[tf.TensorSpec([None, None], tf.float32)])
    def double(self, x):
        return {"y": x * self.scale}

    @tf.function(input_signature=[tf.TensorSpec([None, None], tf.int32),
                                  tf.TensorSpec([None, 2], tf.float32)])
    def embed(self, codes, gain):
        return {"emb": tf.gather(self.table, codes) * gain[:, :1, None] + gain[:, 1:, None]}

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
    def greet(self, name):
        return {"greeting": tf.strings.join(["hello ", name])}

    @tf.function(input_signature=[])
    def metadata(self):
        return {"codebook_size": tf.constant(CODEBOOK), "info": tf.constant("toy")}


def save_toy_model(path: str, scale: float = 2.0, max_codes: int = 32) -> None:
    """Writes one version directory: the SavedModel plus its serving limits."""
    model = ToyModel(scale)
    tf.saved_model.save(model, path, signatures={
        "serving_default": model.double, "embed": model.embed, "greet": model.greet,
        "metadata": model.metadata})
    os.makedirs(os.path.join(path, os.path.dirname(LIMITS_FILE)), exist_ok=True)
    with open(os.path.join(path, LIMITS_FILE), "w") as f:
        json.dump({"embed": {"codes": {"min": 0, "max": CODEBOOK - 1,
                                       "max_dims": [None, max_codes]}}}, f, indent=1)


def write_model_config(path: str, name: str, base_path: str, num_versions: int = 1,
                       labels: dict | None = None) -> str:
    """A ModelServerConfig for one model with a latest-N policy; returns `path`."""
    label_text = "".join(f' version_labels {{ key: "{k}" value: {v} }}'
                         for k, v in (labels or {}).items())
    with open(path, "w") as f:
        f.write(f'model_config_list {{ config {{ name: "{name}" base_path: "{base_path}" '
                f'model_platform: "tensorflow" model_version_policy {{ latest {{ '
                f'num_versions: {num_versions} }} }}{label_text} }} }}\n')
    return path
