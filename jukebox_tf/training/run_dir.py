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


def read_task_json(run_dir: str, key: str, what: str, command: str) -> dict:
    """task.json of a run whose task saved its config under `key` ("vqvae", "prior"); clear
    errors for a folder that is not a `what` run. `command` trains one (for the message)."""
    from jukebox_tf.errors import JukeboxError

    path = task_config_path(run_dir)
    if not tf.io.gfile.exists(path):
        raise JukeboxError(f"{run_dir!r} is not a {what} run directory: {path} is missing "
                           f"(train one with `jukebox-tf {command}`)")
    with tf.io.gfile.GFile(path) as f:
        saved = json.load(f)
    if key not in saved:
        raise JukeboxError(f"{path}: not a {what} run (no {key!r} config in it)")
    return saved


def write_json(path: str, obj) -> None:
    """Writes to a temporary name, then renames over `path`: readers never see half a file."""
    text = json.dumps(obj, indent=2, sort_keys=True) + "\n"
    tmp = f"{path}.tmp-{uuid.uuid4().hex}"
    tf.io.gfile.makedirs(os.path.dirname(path) or ".")
    with tf.io.gfile.GFile(tmp, "w") as f:
        f.write(text)
    tf.io.gfile.rename(tmp, path, overwrite=True)
