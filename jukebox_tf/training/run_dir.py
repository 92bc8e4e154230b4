"""Layout of a run directory (local or any tf.io.gfile filesystem):

    run_dir/checkpoints/      ckpt-<step>.index/.data-*, `checkpoint` (points at the latest)
    run_dir/tensorboard/      scalars every log_every steps, media every media_every steps
    run_dir/train_config.json the TrainConfig of the latest start or resumption
    run_dir/task.json         task.config_dict(), when the task has one
"""

from __future__ import annotations

import json
import os
import uuid

import tensorflow as tf


def checkpoints_dir(run_dir: str) -> str:
    return os.path.join(run_dir, "checkpoints")


def tensorboard_dir(run_dir: str) -> str:
    return os.path.join(run_dir, "tensorboard")


def train_config_path(run_dir: str) -> str:
    return os.path.join(run_dir, "train_config.json")


def task_config_path(run_dir: str) -> str:
    return os.path.join(run_dir, "task.json")


def write_json(path: str, obj) -> None:
    """Writes to a temporary name, then renames over `path`: readers never see half a file."""
    text = json.dumps(obj, indent=2, sort_keys=True) + "\n"
    tmp = f"{path}.tmp-{uuid.uuid4().hex}"
    tf.io.gfile.makedirs(os.path.dirname(path) or ".")
    with tf.io.gfile.GFile(tmp, "w") as f:
        f.write(text)
    tf.io.gfile.rename(tmp, path, overwrite=True)
