"""Checkpoint files of a run: finding the latest, restoring with readable errors, saving.

TF makes saves atomic enough for SIGKILL at any moment: the checkpoint's files are written
first and the `checkpoint` state file, which names the latest one, is replaced atomically
afterwards; a killed save leaves only files that nothing points at.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import tempfile

import tensorflow as tf

from jukebox_tf.errors import JukeboxError

STATE_FILE = "checkpoint"  # TF's name for the file pointing at the latest checkpoint
PREFIX = "ckpt"
OBJECT_GRAPH = "_CHECKPOINTABLE_OBJECT_GRAPH"  # the object-based checkpoint's own structure


def has_checkpoints(directory: str) -> bool:
    return tf.io.gfile.exists(os.path.join(directory, STATE_FILE)) or bool(_indexed(directory))


def latest_checkpoint(directory: str) -> str | None:
    """Path prefix of the latest checkpoint in `directory`, or None if it has no state file.

    Raises JukeboxError when the state file is unreadable or names a checkpoint that is gone
    (TF itself would silently return None and a resume would restart from scratch)."""
    state_path = os.path.join(directory, STATE_FILE)
    if not tf.io.gfile.exists(state_path):
        return None
    state = tf.train.get_checkpoint_state(directory)  # None when the file does not parse
    if state is None or not state.model_checkpoint_path:
        raise JukeboxError(f"{state_path}: not a valid checkpoint state file. "
                           f"{_what_to_do(directory)}")
    path = state.model_checkpoint_path
    if not tf.io.gfile.exists(path + ".index"):
        raise JukeboxError(f"{state_path} names checkpoint {path}, but {path}.index does not "
                           f"exist. {_what_to_do(directory, path)}")
    return path


def restore(checkpoint: tf.train.Checkpoint, path: str, partial: bool = False):
    """Restores `path` into the (already built) objects of `checkpoint`.

    `partial`: the checkpoint may hold more than `checkpoint` tracks (e.g. the optimizer when
    restoring for evaluation). Every object that `checkpoint` tracks must be in the file."""
    try:
        status = checkpoint.restore(path)
        if partial:
            status.expect_partial()
        status.assert_existing_objects_matched()
    except (AssertionError, ValueError) as e:
        if isinstance(e, AssertionError) or "incompatible" in str(e):
            raise JukeboxError(f"checkpoint {path} does not match what this run builds "
                               f"({_first_line(e)}): it was written with another task config "
                               f"or TrainConfig (ema_decay, mixed_precision and weight_decay "
                               f"change what is saved). Use the original settings, or a new "
                               f"run dir.") from None
        raise _damaged(path, e) from None
    except Exception as e:  # the reader raises OpError, IndexError... on damaged files
        raise _damaged(path, e) from None


def restore_variables(checkpoint: tf.train.Checkpoint, path: str):
    """Restores the variables `checkpoint` tracks from `path` one at a time, for evaluation.

    `restore` reads every tensor before it assigns any, so a model takes twice its size at the
    peak (and glibc keeps the freed half); this holds one tensor beyond the model and hands the
    freed heap back. Where a variable is missing from the file or its shape or dtype differs,
    `restore` runs instead, for its errors. Slot variables (optimizer state) are not read."""
    objects, paths = tf.__internal__.tracking.ObjectGraphView(
        checkpoint).breadth_first_traversal()
    wanted = {_variable_key(paths[obj]): obj for obj in objects if isinstance(obj, tf.Variable)}
    with reading_checkpoint(path):
        reader = tf.train.load_checkpoint(path)
        shapes, dtypes = reader.get_variable_to_shape_map(), reader.get_variable_to_dtype_map()
        # restore() reads the object graph first: a damaged file fails here as it fails there.
        reader.get_tensor(OBJECT_GRAPH)
    if any(key not in shapes or list(var.shape) != shapes[key] or var.dtype != dtypes[key]
           for key, var in wanted.items()):
        restore(checkpoint, path, partial=True)
        return
    with reading_checkpoint(path):
        for key, var in wanted.items():
            [value] = tf.raw_ops.RestoreV2(prefix=path, tensor_names=[key],
                                           shape_and_slices=[""], dtypes=[var.dtype])
            var.assign(value)
    release_freed_memory()


@contextlib.contextmanager
def reading_checkpoint(path: str, advice: str | None = None):
    """Raises what reading checkpoint `path` raises as JukeboxError naming its files: the reader
    raises OpError, IndexError... on damaged files, whose own text names neither file nor cure.
    `advice`: what the error tells the user to do (default: a run dir's remedies)."""
    try:
        yield
    except Exception as e:  # as in restore()
        raise _damaged(path, e, advice) from None


def _variable_key(path) -> str:
    """A variable's key in an object-based checkpoint: the names on its path from the root,
    escaped as TF escapes them ("." -> "..", "/" -> ".S")."""
    names = (ref.name.replace(".", "..").replace("/", ".S") for ref in path)
    return "/".join(names) + "/.ATTRIBUTES/VARIABLE_VALUE"


def release_freed_memory() -> None:
    """Hands the heap freed so far back to the system (glibc's malloc_trim; elsewhere nothing):
    glibc keeps freed blocks under 32 MB in the process, so a model's freed initial values
    would stay in its RSS."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def checkpoint_variable_names(path: str) -> list[str]:
    try:
        return [name for name, _ in tf.train.list_variables(path)]
    except Exception as e:  # as in restore()
        raise _damaged(path, e) from None


def remove_partial_saves(directory: str):
    """Deletes the `<prefix>_temp` shards a killed save leaves behind (nothing refers to them)."""
    for name in tf.io.gfile.listdir(directory) if tf.io.gfile.isdir(directory) else ():
        if re.fullmatch(rf"{PREFIX}-\d+_temp.*", name.rstrip("/")):
            path = os.path.join(directory, name.rstrip("/"))
            if tf.io.gfile.isdir(path):
                tf.io.gfile.rmtree(path)
            else:
                tf.io.gfile.remove(path)


class CheckpointWriter:
    """Saves `checkpoint` as <directory>/ckpt-<step>, keeping the newest `keep`.

    Under MultiWorkerMirroredStrategy every worker must save (saving may run collectives), but
    only the chief keeps its files: the others write to a local temporary directory and delete it.
    """

    def __init__(self, checkpoint: tf.train.Checkpoint, directory: str, keep: int, chief: bool):
        self.chief = chief
        self.directory = directory if chief else tempfile.mkdtemp(prefix="jukebox-tf-worker-")
        self.manager = tf.train.CheckpointManager(checkpoint, self.directory, max_to_keep=keep,
                                                  checkpoint_name=PREFIX)

    def save(self, step: int) -> str | None:
        path = self.manager.save(checkpoint_number=step)
        if not self.chief:
            shutil.rmtree(self.directory, ignore_errors=True)
            return None
        return path

    def close(self):
        if not self.chief:
            shutil.rmtree(self.directory, ignore_errors=True)


def _indexed(directory: str) -> list[str]:
    """Checkpoint prefixes with an .index file, oldest step first."""
    if not tf.io.gfile.isdir(directory):
        return []
    found = [m for name in tf.io.gfile.listdir(directory)
             if (m := re.fullmatch(rf"({PREFIX}-(\d+))\.index", name))]
    return [os.path.join(directory, m.group(1)) for m in sorted(found, key=lambda m: int(m[2]))]


def _damaged(path: str, error: Exception, advice: str | None = None) -> JukeboxError:
    advice = advice or _what_to_do(os.path.dirname(path), path)
    return JukeboxError(f"cannot restore checkpoint {path}: {_first_line(error)}. Its files are "
                        f"damaged or incomplete. {advice}")


def _what_to_do(directory: str, damaged: str | None = None) -> str:
    state_path = os.path.join(directory, STATE_FILE)
    earlier = [os.path.basename(p) for p in _indexed(directory) if p != damaged]
    start_over = f"delete {directory} to start over, or train in a new run dir"
    if not earlier:
        return f"No other checkpoint is present: {start_over}."
    fix = f"delete {damaged}.* and " if damaged else ""
    return (f"To continue from an earlier checkpoint, {fix}rewrite {state_path} as the single "
            f"line `model_checkpoint_path: \"{earlier[-1]}\"` (present: {', '.join(earlier)}); "
            f"or {start_over}.")


def _first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return (text[0] if text else type(error).__name__)[:300]
