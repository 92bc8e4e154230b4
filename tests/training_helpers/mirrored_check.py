"""Run as a script: MirroredStrategy over 2 logical CPUs vs one device, printing JSON.

Logical devices must be configured before TF initializes, hence a separate process.
Prints RESULT {"keras_sgd_update", "keras_clipnorm_update", "ema_replica_copies",
"keras_adam_update", "loop_adam_update", "mirrored", "single"}.
"""

import json
import os
import sys
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from jukebox_tf.training.config import TrainConfig  # noqa: E402
from jukebox_tf.training.ema import ExponentialMovingAverage  # noqa: E402
from jukebox_tf.training.loop import restore_for_eval, train  # noqa: E402
from jukebox_tf.training.optimizer import Adam  # noqa: E402
from training_helpers.toy_tasks import Regression, weights  # noqa: E402


def keras_apply_in_replica_context(strategy, optimizer_factory, grad_of_replica):
    """Applies per-replica gradients the plain Keras 3 way; returns the variable after one step."""
    with strategy.scope():
        var = keras.Variable(np.zeros(1, np.float32))
        optimizer = optimizer_factory()
        optimizer.build([var])

    @tf.function
    def step():
        def replica_fn():
            rid = tf.distribute.get_replica_context().replica_id_in_sync_group
            optimizer.apply([grad_of_replica(tf.cast(rid, tf.float32))], [var])
        strategy.run(replica_fn)

    step()
    return float(var.numpy()[0])


# First Adam update = lr * sqrt(1 - b2) * g / (sqrt(1 - b2) * |g| + eps) ~ g for these values.
LINEAR_ADAM = dict(learning_rate=1e6 / np.sqrt(1e-3), epsilon=1e6)


def ema_replica_copies(strategy):
    """Each replica's copy of an EMA shadow after one update from weights 1 -> 3, decay 0.5."""
    with strategy.scope():
        var = keras.Variable(np.ones(3, np.float32))
        ema = ExponentialMovingAverage([var], 0.5)
    var.assign(np.full(3, 3.0, np.float32))
    tf.function(lambda: ema.update([var]))()
    return [np.array(c).tolist() for c in strategy.experimental_local_results(ema.shadows[0])]


def run(strategy, config):
    task = Regression(global_batch_size=config.global_batch_size, hidden=8, nan_steps=(4,))
    run_dir = tempfile.mkdtemp()
    metrics = train(task, config, run_dir, strategy=strategy, progress=False)
    replica_copies = [[np.array(c) for c in strategy.experimental_local_results(v.value)]
                      for v in task.model.trainable_variables]
    copies_differ = max(float(np.max(np.abs(c[0] - c[-1]))) for c in replica_copies)
    trained = weights(task.model)
    ema = weights(restore_for_eval(task, run_dir, use_ema=True))
    return {"metrics": metrics, "weights": [w.tolist() for w in trained],
            "ema": [w.tolist() for w in ema], "replica_copies_max_diff": copies_differ,
            "replicas": strategy.num_replicas_in_sync}


def main():
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    mirrored = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    result = {
        # Replica r's gradient is r + 1: SUM -> 3, MEAN -> 1.5, no reduction -> 1 (or 2).
        "keras_sgd_update": -keras_apply_in_replica_context(
            mirrored, lambda: keras.optimizers.SGD(1.0), lambda r: tf.fill([1], r + 1.0)),
        # Each replica's gradient 0.9 with global_clipnorm=1: clipped after the sum -> 1.0,
        # clipped per replica before it -> 1.8.
        "keras_clipnorm_update": -keras_apply_in_replica_context(
            mirrored, lambda: keras.optimizers.SGD(1.0, global_clipnorm=1.0),
            lambda r: tf.fill([1], 0.9)),
        "ema_replica_copies": ema_replica_copies(mirrored),
        # Both replicas pass the already-summed gradient 3, as the loop does, to an Adam whose
        # huge epsilon makes its first update ~ the gradient: 3 if apply() adds nothing, 6 if
        # it sums the replicas again.
        "keras_adam_update": -keras_apply_in_replica_context(
            mirrored, lambda: keras.optimizers.Adam(**LINEAR_ADAM), lambda r: tf.fill([1], 3.0)),
        "loop_adam_update": -keras_apply_in_replica_context(
            mirrored, lambda: Adam(**LINEAR_ADAM), lambda r: tf.fill([1], 3.0)),
    }
    config = TrainConfig(steps=12, global_batch_size=8, learning_rate=0.05, warmup_steps=3,
                         clip_norm=0.5, log_every=4, media_every=1000, checkpoint_every=6,
                         ema_decay=0.8)
    result["mirrored"] = run(mirrored, config)
    result["single"] = run(tf.distribute.OneDeviceStrategy("/cpu:0"), config)
    print("RESULT " + json.dumps(result))


if __name__ == "__main__":
    main()
