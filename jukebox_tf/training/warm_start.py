"""Starting a run from another run's weights (fine-tuning): `warm_start`.

The source run's latest checkpoint is read one tensor at a time, as `restore_for_eval` reads
it: its EMA weights when it kept them (what `sample` and `export` of that run use), else its
weights (runs written by `import-weights` hold the released, already averaged, weights).
Only the model's variables are read: the new run gets step 0 and a fresh optimizer.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import tensorflow as tf

from jukebox_tf.errors import JukeboxError
from jukebox_tf.training import checkpoints, run_dir as layout

_VALUE = ".ATTRIBUTES/VARIABLE_VALUE"


def starting_checkpoint(run_dir: str) -> str:
    """The checkpoint a run starting from `run_dir` reads; an error when it has none."""
    path = checkpoints.latest_checkpoint(layout.checkpoints_dir(run_dir))
    if path is None:
        raise JukeboxError(f"--init-from {run_dir}: it has no checkpoint to start from")
    return path


def warm_start(model, run_dir: str, adapt=(), skip=()) -> str:
    """Sets every variable of `model` (built) to its value in `run_dir`'s latest checkpoint;
    returns that checkpoint's path.

    adapt: (variable, fn(source array) -> array of the variable's shape) pairs, for those whose
    shape the new run changes (label embeddings that gain rows). skip: variables that keep the
    value they were built with. Any other shape or dtype that differs is an error naming it.
    """
    from jukebox_tf.training.loop import variable_keys

    adapt = {id(v): fn for v, fn in adapt}
    skip = {id(v) for v in skip}
    path = starting_checkpoint(run_dir)
    ema_index = {id(v): i for i, v in enumerate(model.trainable_variables)}
    with checkpoints.reading_checkpoint(path):
        shapes = tf.train.load_checkpoint(path).get_variable_to_shape_map()
    use_ema = any(name.startswith("ema/") for name in shapes)
    for key, variable in zip(variable_keys(model.variables), model.variables):
        if id(variable) in skip:
            continue
        name = f"model/{key}/{_VALUE}"
        if use_ema and id(variable) in ema_index:
            name = f"ema/shadows/{ema_index[id(variable)]}/{_VALUE}"
        if name not in shapes:
            raise JukeboxError(f"--init-from {run_dir}: checkpoint {path} has no value for "
                               f"{variable.path} ({name}): a run of another model")
        value = _read(path, name, variable.dtype, adapt.get(id(variable)))
        if tuple(value.shape) != tuple(variable.shape):
            raise JukeboxError(f"--init-from {run_dir}: {variable.path} is {tuple(value.shape)} "
                               f"there and {tuple(variable.shape)} here: a run of another "
                               f"architecture")
        variable.assign(value)
    checkpoints.release_freed_memory()
    return path


def _read(path: str, name: str, dtype, fn: Callable | None):
    with checkpoints.reading_checkpoint(path):
        [value] = tf.raw_ops.RestoreV2(prefix=path, tensor_names=[name], shape_and_slices=[""],
                                       dtypes=[tf.as_dtype(dtype)])
    return value if fn is None else np.asarray(fn(value.numpy()), value.dtype.as_numpy_dtype)
