"""Tasks and configs shared by helper scripts and the tests that check their results."""

import os
import signal

from jukebox_tf.training.config import TrainConfig
from training_helpers.toy_tasks import Regression


def multi_worker_task(signal_at=None):
    """`signal_at`: the step at which media_summaries (on the chief only) sends itself SIGTERM."""
    def hook(model, step):
        if step == signal_at:
            os.kill(os.getpid(), signal.SIGTERM)

    return Regression(global_batch_size=8, hidden=8, hook=hook)


def multi_worker_config(steps):
    return TrainConfig(steps=steps, global_batch_size=8, learning_rate=0.05, warmup_steps=3,
                       clip_norm=0.5, ema_decay=0.9, log_every=5, media_every=7,
                       checkpoint_every=10)


def kill_task(hook=None):
    return Regression(global_batch_size=8, hidden=8, hook=hook)


def kill_config(checkpoint_every, steps=1_000_000):
    return TrainConfig(steps=steps, global_batch_size=8, learning_rate=1e-3, warmup_steps=0,
                       decay="constant", checkpoint_every=checkpoint_every, keep_checkpoints=2,
                       media_every=1, log_every=100)
