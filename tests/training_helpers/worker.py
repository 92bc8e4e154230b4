"""Run as a script: one worker of a 2-process MultiWorkerMirroredStrategy run of the toy task.

    worker.py TASK_INDEX PORT0,PORT1 RUN_DIR OUT_JSON STEPS SIGNAL_AT

TF_CONFIG is set here, before TensorFlow is imported. The chief sends itself SIGTERM at step
SIGNAL_AT. Writes {"multi_worker", "chief", "metrics", "weights"} to OUT_JSON.
"""

import json
import os
import sys


def main():
    index, ports, run_dir, out_path, steps, signal_at = sys.argv[1:7]
    os.environ["TF_CONFIG"] = json.dumps({
        "cluster": {"worker": [f"localhost:{p}" for p in ports.split(",")]},
        "task": {"type": "worker", "index": int(index)},
    })
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

    import tensorflow as tf

    from jukebox_tf.training.loop import train
    from jukebox_tf.training.strategy import is_chief, strategy_from_env
    from training_helpers.configs import multi_worker_config, multi_worker_task
    from training_helpers.toy_tasks import weights

    strategy = strategy_from_env()
    task = multi_worker_task(int(signal_at))
    metrics = train(task, multi_worker_config(int(steps)), run_dir, strategy=strategy,
                    progress=False)
    result = {"multi_worker": isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy),
              "chief": is_chief(strategy), "metrics": metrics,
              "weights": [w.tolist() for w in weights(task.model)]}
    with open(out_path, "w") as f:
        json.dump(result, f)


if __name__ == "__main__":
    main()
