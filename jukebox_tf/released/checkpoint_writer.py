"""Writing a run's checkpoint one tensor at a time, for models too large to hold twice.

`training.loop` saves a model through tf.train.Checkpoint, which needs every variable in
memory. Converting a 5B-parameter prior that way would hold it in full (20 GB in float32)
beside the file it is read from. Here each tensor is written to a checkpoint shard of its own
as soon as it is converted (tf.raw_ops.SaveV2), the shards are merged into one checkpoint
(MergeV2Checkpoints, which renames the data files rather than copying them), and the object
graph that tf.train.Checkpoint restores by comes from a checkpoint of the same structure
whose variables are empty. What `restore_for_eval` reads is then the same as after training:
the model's variables under `training.loop.model_variables`' keys, `step` and `skipped`.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from typing import Iterable, Sequence

import numpy as np
import tensorflow as tf

from jukebox_tf.training.checkpoints import PREFIX, STATE_FILE
from jukebox_tf.training.loop import variable_keys

_VALUE = ".ATTRIBUTES/VARIABLE_VALUE"
_GRAPH = "_CHECKPOINTABLE_OBJECT_GRAPH"


def _structure(variables: Sequence, step: int) -> dict:
    """{checkpoint key: value} of everything but the model's weights, object graph included,
    from a checkpoint of the same structure with empty variables."""
    empty = {key: tf.Variable(tf.zeros([0], v.dtype), name=key)
             for key, v in zip(variable_keys(variables), variables)}
    checkpoint = tf.train.Checkpoint(model=empty, step=tf.Variable(step, dtype=tf.int64),
                                     skipped=tf.Variable(0, dtype=tf.int64))
    with tempfile.TemporaryDirectory(prefix="jukebox-structure-") as tmp:
        reader = tf.train.load_checkpoint(checkpoint.save(os.path.join(tmp, "s")))
        return {name: reader.get_tensor(name) for name in reader.get_variable_to_shape_map()
                if not name.startswith("model/")}


def write_checkpoint(ckpt_dir: str, variables: Sequence, arrays: Iterable[np.ndarray],
                     step: int = 0) -> str:
    """Writes `ckpt_dir/ckpt-<step>` holding arrays[i] as the value of variables[i] (a model's
    variables in model.variables order; only their names, shapes and dtypes are read, so a
    model built under keras.StatelessScope(initialize_variables=False) will do), and points
    the directory's `checkpoint` state file at it. `arrays` is consumed one at a time: peak
    memory is one tensor. Returns the checkpoint's path prefix."""
    os.makedirs(ckpt_dir, exist_ok=True)
    keys = variable_keys(variables)
    parts = tempfile.mkdtemp(prefix=".parts-", dir=ckpt_dir)
    prefixes = []
    try:
        def save(name, value):
            prefix = os.path.join(parts, f"{len(prefixes):06d}")
            tf.raw_ops.SaveV2(prefix=prefix, tensor_names=[name], shape_and_slices=[""],
                              tensors=[tf.constant(value)])
            prefixes.append(prefix)

        count = 0
        for key, variable, array in zip(keys, variables, arrays):
            if tuple(array.shape) != tuple(variable.shape):
                raise ValueError(f"{variable.path}: got shape {tuple(array.shape)}, the model's "
                                 f"variable is {tuple(variable.shape)}")
            save(f"model/{key}/{_VALUE}", array.astype(np.dtype(variable.dtype), copy=False))
            count += 1
        if count != len(keys):
            raise ValueError(f"got {count} tensors for {len(keys)} variables")
        for name, value in _structure(variables, step).items():
            save(name, value)
        path = os.path.join(ckpt_dir, f"{PREFIX}-{step}")
        tf.raw_ops.MergeV2Checkpoints(checkpoint_prefixes=prefixes, destination_prefix=path,
                                      delete_old_dirs=False)
    finally:
        shutil.rmtree(parts, ignore_errors=True)
    # Relative, as CheckpointManager writes it: the run directory may be renamed or moved.
    name = os.path.basename(path)
    with open(os.path.join(ckpt_dir, STATE_FILE), "w") as f:
        f.write(f'model_checkpoint_path: "{name}"\nall_model_checkpoint_paths: "{name}"\n')
    return path
