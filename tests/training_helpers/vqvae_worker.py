"""Run as a script: train the tiny VQ-VAE on fixed synthetic batches, as one worker of a
2-process MultiWorkerMirroredStrategy (TASK_INDEX 0/1) or alone (TASK_INDEX -1).

    vqvae_worker.py TASK_INDEX PORT0,PORT1 RUN_DIR OUT_NPZ STEPS

Worker w reads the w-th half of every global batch, so the two workers together see exactly
what the single process sees. Writes every model variable (weights and codebooks) to OUT_NPZ.
"""

import json
import os
import sys

GLOBAL_BATCH, LENGTH = 4, 2048


def main():
    index, ports, run_dir, out_path, steps = sys.argv[1:6]
    index = int(index)
    if index >= 0:
        os.environ["TF_CONFIG"] = json.dumps({
            "cluster": {"worker": [f"localhost:{p}" for p in ports.split(",")]},
            "task": {"type": "worker", "index": index}})
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

    import dataclasses

    import numpy as np
    import tensorflow as tf

    from jukebox_tf.training import TrainConfig, train
    from jukebox_tf.vqvae import get_preset
    from jukebox_tf.vqvae.task import VQVAETask

    rng = np.random.RandomState(0)
    t = np.arange(LENGTH) / 22050
    audio = np.stack([0.4 * np.sin(2 * np.pi * (110 + 37 * i) * t) + 0.05 * rng.randn(LENGTH)
                      for i in range(GLOBAL_BATCH * 8)]).astype(np.float32)[..., None]

    class FixedBatches(VQVAETask):
        def dataset(self, input_context, seed):
            per_replica = input_context.get_per_replica_batch_size(GLOBAL_BATCH)
            start = input_context.input_pipeline_id * per_replica
            batches = audio.reshape(-1, GLOBAL_BATCH, LENGTH, 1)[:, start:start + per_replica]
            return tf.data.Dataset.from_tensor_slices(batches).repeat()

    config = dataclasses.replace(get_preset("tiny"), sample_length=LENGTH)
    task = FixedBatches(config, None, GLOBAL_BATCH,
                        data_stats={"l2": 0.08, "l1": 0.25, "spec": 40.0})
    model = {}

    build = task.build

    def keep(self=task):
        model["m"] = build()
        return model["m"]

    task.build = keep
    train(task, TrainConfig(steps=int(steps), global_batch_size=GLOBAL_BATCH,
                            learning_rate=1e-3, warmup_steps=1, ema_decay=0.9,
                            checkpoint_every=100, log_every=1, media_every=1000),
          run_dir, progress=False)
    np.savez(out_path, **{v.path: v.numpy() for v in model["m"].variables})


if __name__ == "__main__":
    main()
