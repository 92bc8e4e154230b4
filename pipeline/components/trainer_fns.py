"""`run_fn`s of the stock TFX Trainer: the library's strategy-aware training loop.

The Trainer's `model` output (`<uri>/Format-Serving`) is a jukebox-tf run directory
(task.json, train_config.json, checkpoints/), loadable with `load_vqvae_run` /
`load_prior_run`; TensorBoard logs go to the `model_run` output. `custom_config` carries the
preset, the level (priors) and TrainConfig fields; the steps come from `train_args`.

Each run_fn creates its distribution strategy before it reads any data: under a multi-worker
TF_CONFIG (a Trainer on Vertex or Kubeflow with several workers) the collectives must be
configured before TensorFlow's runtime starts, and reading the dataset starts it.
"""

from __future__ import annotations

import os
import sys

from jukebox_tf.training import TrainConfig, strategy_from_env, train


def split_dir(patterns) -> str:
    """The split folder of a Trainer file pattern list (`<uri>/Split-train/*`)."""
    pattern = patterns[0] if isinstance(patterns, (list, tuple)) else patterns
    return os.path.dirname(pattern) if pattern.endswith("*") else pattern


def _progress() -> bool:
    """A live progress bar on a terminal; none in a cluster's logs."""
    return sys.stderr.isatty()


def _train_config(fn_args) -> TrainConfig:
    return TrainConfig(steps=int(fn_args.train_steps or 0), **fn_args.custom_config["train"])


def _train(task, config: TrainConfig, fn_args, strategy) -> None:
    train(task, config, fn_args.serving_model_dir, strategy=strategy, progress=_progress(),
          tensorboard_dir=fn_args.model_run_dir)


def vqvae_run_fn(fn_args) -> None:
    """Trains the VQ-VAE on the train split of AudioExampleGen's Examples."""
    from jukebox_tf.vqvae import get_preset
    from jukebox_tf.vqvae.task import VQVAETask

    strategy = strategy_from_env()
    custom = fn_args.custom_config
    config = _train_config(fn_args)
    task = VQVAETask(get_preset(custom["preset"], sample_rate=custom["sample_rate"]),
                     split_dir(fn_args.train_files), config.global_batch_size)
    _train(task, config, fn_args, strategy)


def prior_run_fn(fn_args) -> None:
    """Trains the prior of `custom_config["level"]` on the train split of CodeGen's codes;
    with a `base_model` (an imported run), fine-tunes that prior instead."""
    from jukebox_tf.prior import get_preset
    from jukebox_tf.prior.task import PriorTask
    from pipeline.imported_runs import base_model_run

    strategy = strategy_from_env()
    custom = fn_args.custom_config
    config = _train_config(fn_args)
    codes = split_dir(fn_args.train_files)
    if fn_args.base_model:
        task = PriorTask.from_run(base_model_run(fn_args.base_model), codes, custom["level"],
                                  custom["batch_size"], labels=custom.get("labels", "map"))
    else:
        task = PriorTask.from_codes(get_preset(custom["preset"]), codes, custom["level"],
                                    custom["batch_size"])
    _train(task, config, fn_args, strategy)
