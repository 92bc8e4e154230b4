"""One custom training loop for every model, under any tf.distribute strategy.

    from jukebox_tf.training import TrainConfig, train, restore_for_eval, strategy_from_env

Keras 3's fit() breaks under MultiWorkerMirroredStrategy, so training runs its own loop:
`Task` (task.py) is what a model provides, `train` (loop.py) the loop. Names load on first
use, so importing the package does not import TensorFlow.
"""

import importlib

_EXPORTS = {
    "TrainConfig": "config",
    "Task": "task",
    "train": "loop",
    "restore_for_eval": "loop",
    "compiled_step": "loop",
    "global_dtype_policy": "loop",
    "strategy_from_env": "strategy",
    "is_chief": "strategy",
    "WarmupDecay": "schedule",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name):
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
