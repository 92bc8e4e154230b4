"""Run as a script: trains the toy task with resume=True until killed.

    kill_target.py RUN_DIR LOG_PATH CHECKPOINT_EVERY

After every step appends `[step, [flat weights...]]` as one JSON line to LOG_PATH, so that the
test can check a checkpoint holds exactly the weights the killed process had at that step.
"""

import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from jukebox_tf.training.loop import train  # noqa: E402
from training_helpers.configs import kill_config, kill_task  # noqa: E402


def main():
    run_dir, log_path, every = sys.argv[1], sys.argv[2], int(sys.argv[3])
    with open(log_path, "a", buffering=1) as log:
        def log_weights(model, step):
            flat = [float(x) for v in model.trainable_variables for x in v.numpy().ravel()]
            log.write(json.dumps([step, flat]) + "\n")

        train(kill_task(hook=log_weights), kill_config(every), run_dir, resume=True,
              progress=False)


if __name__ == "__main__":
    main()
