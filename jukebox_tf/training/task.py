"""What the training loop needs from a model: the `Task` protocol.

A task may also define optional methods, looked up with `hasattr`:

    media_summaries(model, batch, step) -> None
        Called eagerly on the chief every `TrainConfig.media_every` steps, with a tf.summary
        default writer active, on the first local replica's batch; writes audio, images or
        histograms with `tf.summary.*` (the step is already set).
    config_dict() -> dict
        A JSON-able description of the task, saved as run_dir/task.json.
    warm_start(model) -> None
        Called once at step 0 of a run that has no checkpoint yet, after `build`: sets the
        weights from another run (fine-tuning; training/warm_start.py) or does nothing.
    frozen_variables(model) -> list
        Trainable variables that training leaves unchanged bit for bit (no gradient, no
        update, no weight decay; their EMA stays their value).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol, runtime_checkable

if TYPE_CHECKING:
    import keras
    import tensorflow as tf


@runtime_checkable
class Task(Protocol):
    name: str

    def build(self) -> keras.Model:
        """Creates the model inside the strategy's scope; must create every variable (e.g. by
        calling the model on a dummy batch), since none may be created inside the train step."""

    def dataset(self, input_context: tf.distribute.InputContext, seed: int) -> tf.data.Dataset:
        """Infinite dataset of per-replica batches for pipeline `input_context.input_pipeline_id`
        of `input_context.num_input_pipelines`. Consecutive elements go to consecutive local
        replicas. `seed` differs between a fresh run and each resumption (see loop.py)."""

    def loss(self, model: keras.Model, batch, training: bool) -> tuple[tf.Tensor, dict]:
        """Returns (scalar loss = mean over this replica's batch, dict of scalar metrics).

        Runs inside the replica step of a tf.function; may update non-trainable state (e.g. a
        codebook by EMA) using `tf.distribute.get_replica_context().all_reduce`."""
