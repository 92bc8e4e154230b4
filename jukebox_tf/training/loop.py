"""train(): the one training loop for every model and strategy; restore_for_eval().

    metrics = train(task, TrainConfig(steps=10_000, global_batch_size=32), "runs/vqvae")
    model = restore_for_eval(task, "runs/vqvae")   # EMA weights

Resuming restores model, optimizer, EMA, step and skipped-step count, but not the position in
the data: the tf.data iterator is not checkpointed, because its shuffle buffers of audio would
bloat every checkpoint. A run that starts at step s > 0 passes task.dataset a seed derived from
(config.seed, s) instead of config.seed, so it draws new batches rather than replaying the ones
the run began with.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import sys
import time

import keras
import numpy as np
import tensorflow as tf
from tqdm import tqdm

from jukebox_tf.errors import JukeboxError
from jukebox_tf.training import checkpoints, run_dir as layout
from jukebox_tf.training.config import TrainConfig, precision_policy
from jukebox_tf.training.ema import ExponentialMovingAverage, tf_variable
from jukebox_tf.training.optimizer import build_optimizer
from jukebox_tf.training.signals import StopSignals
from jukebox_tf.training.step import TrainStep
from jukebox_tf.training.strategy import is_chief, strategy_from_env


def train(task, config: TrainConfig, run_dir: str, *,
          strategy: tf.distribute.Strategy | None = None, resume: bool = False,
          progress: bool = True, tensorboard_dir: str | None = None) -> dict:
    """Trains `task` for `config.steps` steps (in total, counting steps before a resumption).

    TensorBoard logs go to `tensorboard_dir` (default run_dir/tensorboard). A run with
    nothing to train and no checkpoint yet saves its initial weights, so every run loads.

    Returns the last logged metrics as floats, with "step" and "skipped_steps". Stops early,
    after saving, on SIGTERM/SIGINT; then "step" < config.steps.
    """
    strategy = strategy or strategy_from_env()
    chief = is_chief(strategy)
    ckpt_dir = layout.checkpoints_dir(run_dir)
    latest = _latest_to_resume(ckpt_dir, resume, chief)
    replicas = strategy.num_replicas_in_sync
    if config.global_batch_size % replicas:
        raise JukeboxError(f"TrainConfig.global_batch_size={config.global_batch_size} is not "
                           f"divisible by the {replicas} replicas of the distribution strategy")
    if chief:
        _write_run_files(task, config, run_dir)
    with global_dtype_policy(config.dtype_policy):
        state = _TrainState.build(task, config, strategy)
        if latest:
            checkpoints.restore(state.checkpoint, latest)
        elif hasattr(task, "warm_start"):
            task.warm_start(state.model)  # another run's weights, if the task starts from one
            if state.ema is not None:
                state.ema.reset(state.model.trainable_variables)
        _check_workers_agree(strategy, int(state.step.numpy()), ckpt_dir)
        if chief:
            checkpoints.remove_partial_saves(ckpt_dir)
        return _Loop(task, config, run_dir, strategy, state, chief, progress,
                     tensorboard_dir or layout.tensorboard_dir(run_dir)).run()


def restore_for_eval(task, run_dir: str, use_ema: bool = True,
                     precision: str = "float32") -> keras.Model:
    """Builds the task's model and loads the latest checkpoint of `run_dir` into it (the EMA
    weights when `use_ema`). Uses the current strategy scope, if any; no optimizer state.
    `precision` "bfloat16" builds it under the mixed_bfloat16 policy: float32 weights,
    bfloat16 compute (faster on CPUs with AMX or AVX512-BF16, at 8 bits of mantissa)."""
    policy = precision_policy(precision)
    ckpt_dir = layout.checkpoints_dir(run_dir)
    path = checkpoints.latest_checkpoint(ckpt_dir)
    if path is None:
        raise JukeboxError(f"{ckpt_dir}: no checkpoint to restore (has this run saved one yet?)")
    if use_ema and not any(name.startswith("ema/")
                           for name in checkpoints.checkpoint_variable_names(path)):
        if not _imported(run_dir):
            raise JukeboxError(f"checkpoint {path} has no EMA weights (the run had "
                               f"TrainConfig.ema_decay=None): restore it with use_ema=False")
        use_ema = False  # released weights (import-weights): already the averaged ones
    with global_dtype_policy(policy):
        model = task.build()
    ema = ExponentialMovingAverage(model.trainable_variables, 0.0) if use_ema else None
    tracked = {"model": model_variables(model), **({"ema": ema} if ema else {})}
    checkpoints.restore_variables(tf.train.Checkpoint(**tracked), path)
    if ema:
        ema.copy_to(model.trainable_variables)
    return model


def _imported(run_dir: str) -> bool:
    """Whether the run was written by `import-weights` (its task.json says so)."""
    path = layout.task_config_path(run_dir)
    if not tf.io.gfile.exists(path):
        return False
    with tf.io.gfile.GFile(path) as f:
        return "imported" in json.load(f)


def compiled_step(task, config: TrainConfig, strategy: tf.distribute.Strategy | None = None):
    """(step, iterator, model): the compiled step `train` runs, without logging, checkpoints
    or signals, for benchmarks. `step(iterator, False)` runs one update and returns
    (metrics, batch)."""
    strategy = strategy or strategy_from_env()
    with global_dtype_policy(config.dtype_policy):
        state = _TrainState.build(task, config, strategy)
    iterator = iter(strategy.distribute_datasets_from_function(
        lambda ctx: task.dataset(ctx, config.seed)))
    return TrainStep(task, state, config, strategy), iterator, state.model


def model_variables(model: keras.Model) -> dict:
    """What a checkpoint saves of the model: every variable, keyed by its position in
    `model.variables` and its name ("00012_kernel").

    Not the model object itself: Keras 3 keeps lists of sublayers (e.g. one encoder per level)
    in its own tracked lists, which tf.train.Checkpoint does not see, so their weights would
    silently be left out. Not the Keras paths either: those carry per-process name counters
    ("vqvae_1/..." for a second instance), while the order is fixed by the architecture.
    """
    return dict(zip(variable_keys(model.variables), map(tf_variable, model.variables)))


def variable_keys(variables) -> list[str]:
    """The checkpoint key of each of `variables` (a model's, in order): see model_variables."""
    return [f"{i:05d}_{v.name}" for i, v in enumerate(variables)]


def dataset_seed(seed: int, start_step: int) -> int:
    """The seed task.dataset gets in a run starting at `start_step` (see the module docstring)."""
    if start_step == 0:
        return seed
    return int(np.random.SeedSequence([seed, start_step]).generate_state(1)[0] & 0x7FFFFFFF)


@dataclasses.dataclass
class _TrainState:
    """Everything a checkpoint holds, created under the strategy's scope; `updated`: the
    trainable variables the optimizer changes (those the task does not freeze)."""

    model: keras.Model
    optimizer: keras.optimizers.Optimizer
    ema: ExponentialMovingAverage | None
    step: tf.Variable
    skipped: tf.Variable
    checkpoint: tf.train.Checkpoint
    updated: list

    @classmethod
    def build(cls, task, config: TrainConfig, strategy) -> _TrainState:
        with strategy.scope():
            keras.utils.set_random_seed(config.seed)
            model = task.build()
            trainable = model.trainable_variables
            # Frozen variables stay trainable in Keras' sense, so the EMA and its checkpoint
            # keys are those of an unfrozen run; they get no gradient, update or decay.
            frozen = {id(v) for v in (task.frozen_variables(model)
                                      if hasattr(task, "frozen_variables") else ())}
            updated = [v for v in trainable if id(v) not in frozen]
            if not updated:
                raise JukeboxError("every trainable variable is frozen: nothing to train")
            optimizer = build_optimizer(config)
            # Now, not lazily inside the compiled step, where no variable may be created.
            optimizer.build(updated)
            ema = (ExponentialMovingAverage(
                trainable, config.ema_decay,
                frozen=[i for i, v in enumerate(trainable) if id(v) in frozen])
                   if config.ema_decay is not None else None)
            step = tf.Variable(0, dtype=tf.int64, trainable=False, name="step")
            skipped = tf.Variable(0, dtype=tf.int64, trainable=False, name="skipped_steps")
        tracked = dict(model=model_variables(model), optimizer=optimizer, step=step,
                       skipped=skipped)
        if ema is not None:
            tracked["ema"] = ema
        return cls(model, optimizer, ema, step, skipped, tf.train.Checkpoint(**tracked),
                   updated)


class _Loop:
    """The Python side of training: steps, logging, media, checkpoints, stop requests."""

    def __init__(self, task, config: TrainConfig, run_dir: str, strategy, state: _TrainState,
                 chief: bool, progress: bool, tensorboard_dir: str):
        self.task, self.config, self.strategy, self.state = task, config, strategy, state
        self.tensorboard_dir = tensorboard_dir
        self.run_dir, self.chief, self.progress = run_dir, chief, progress and chief
        self.start = int(state.step.numpy())
        self.logged = {"step": float(self.start), "skipped_steps": float(state.skipped.numpy())}
        if self.start and chief:
            _note(f"resuming at step {self.start}")

    def run(self) -> dict:
        config = self.config
        self.saver = checkpoints.CheckpointWriter(self.state.checkpoint,
                                                  layout.checkpoints_dir(self.run_dir),
                                                  config.keep_checkpoints, self.chief)
        if self.start >= config.steps:
            if self.chief:
                _note(f"already at step {self.start} of {config.steps}: nothing to train")
            if not checkpoints.has_checkpoints(layout.checkpoints_dir(self.run_dir)):
                self.saver.save(self.start)  # every worker: saving may run collectives
            return self.logged
        self.writer = (tf.summary.create_file_writer(self.tensorboard_dir)
                       if self.chief else tf.summary.create_noop_writer())
        seed = dataset_seed(config.seed, self.start)
        iterator = iter(self.strategy.distribute_datasets_from_function(
            lambda ctx: self.task.dataset(ctx, seed)))
        train_step = TrainStep(self.task, self.state, config, self.strategy)
        bar = tqdm(total=config.steps, initial=self.start, unit="step", dynamic_ncols=True,
                   disable=not self.progress)
        step, window = self.start, (self.start, time.perf_counter())
        try:
            with StopSignals() as stop:
                while step < config.steps:
                    out, batch = train_step(iterator, stop.requested)
                    step += 1
                    bar.update(1)
                    # Reduced over all workers: every worker stops after the same step.
                    stopping = bool(out["stop"])
                    last = stopping or step == config.steps
                    if step % config.log_every == 0 or last:
                        window = self._log(out, step, window, bar)
                    if step % config.media_every == 0 and hasattr(self.task, "media_summaries"):
                        self._media(batch, step)
                    if step % config.checkpoint_every == 0 or last:
                        self.saver.save(step)
                        self.writer.flush()
                    if stopping:
                        if self.chief:
                            _note(f"stopped at step {step}; resume with resume=True (--resume)")
                        break
        finally:
            bar.close()
            self.saver.close()
            self.writer.close()
        return self.logged

    def _log(self, out: dict, step: int, window: tuple, bar) -> tuple:
        now = time.perf_counter()
        metrics = {k: float(v) for k, v in out.items() if k != "stop"}
        metrics["steps_per_second"] = (step - window[0]) / max(now - window[1], 1e-9)
        with self.writer.as_default():
            for name, value in metrics.items():
                tf.summary.scalar(name, value, step=step)
        bar.set_postfix(loss=f"{metrics['loss']:.4g}", refresh=False)
        self.logged = {**metrics, "step": float(step)}
        return step, now

    def _media(self, batch, step: int):
        if self.chief:
            local = self.strategy.experimental_local_results(batch)[0]
            with self.writer.as_default(step=step):
                self.task.media_summaries(self.state.model, local, step)


def _latest_to_resume(ckpt_dir: str, resume: bool, chief: bool) -> str | None:
    if not resume:
        if checkpoints.has_checkpoints(ckpt_dir):
            raise JukeboxError(f"{ckpt_dir} already has checkpoints: pass resume=True "
                               f"(--resume) to continue that run, or use a new run dir")
        return None
    latest = checkpoints.latest_checkpoint(ckpt_dir)
    if latest is None and chief:
        _note(f"no checkpoint in {ckpt_dir}: starting a fresh run")
    return latest


def _check_workers_agree(strategy, step: int, ckpt_dir: str):
    """Workers that restored different steps (a run_dir not shared by all of them) would train
    on silently diverging weights: all-reduce step and step^2 and compare."""
    if not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        return
    value = tf.constant([step, step * step], tf.float64)
    total = strategy.experimental_local_results(strategy.run(
        lambda: tf.distribute.get_replica_context().all_reduce("sum", value)))[0].numpy()
    # n * sum(s^2) == sum(s)^2 only if every replica has the same s.
    if strategy.num_replicas_in_sync * total[1] != total[0] ** 2:
        raise JukeboxError(f"the workers restored different steps from {ckpt_dir} (this one: "
                           f"{step}): run_dir must be on a filesystem every worker sees")


def _write_run_files(task, config: TrainConfig, run_dir: str):
    layout.write_json(layout.train_config_path(run_dir), config.to_dict())
    if hasattr(task, "config_dict"):
        layout.write_json(layout.task_config_path(run_dir), task.config_dict())


@contextlib.contextmanager
def global_dtype_policy(name: str | None):
    """Sets Keras' global dtype policy (None: leaves it) for the layers built inside; puts the
    old one back."""
    if name is None:
        yield
        return
    previous = keras.mixed_precision.dtype_policy()
    keras.mixed_precision.set_dtype_policy(name)
    try:
        yield
    finally:
        keras.mixed_precision.set_dtype_policy(previous)


def _note(message: str):
    print(f"jukebox-tf train: {message}", file=sys.stderr, flush=True)
