"""The training loop (jukebox_tf.training) on tiny deterministic tasks.

Strategies that must be configured before TensorFlow starts (2 logical CPUs, 2 workers) and
SIGKILL run in subprocesses: tests/training_helpers/*.py.
"""

import dataclasses
import json
import math
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import tensorflow as tf  # noqa: E402

from jukebox_tf.errors import JukeboxError  # noqa: E402
from jukebox_tf.training import checkpoints  # noqa: E402
from jukebox_tf.training.config import TrainConfig  # noqa: E402
from jukebox_tf.training.loop import (compiled_step, dataset_seed, restore_for_eval,  # noqa: E402
                                      train)
from jukebox_tf.training.schedule import WarmupDecay  # noqa: E402
from jukebox_tf.training.strategy import (  # noqa: E402
    cluster_size, is_chief, is_chief_task, strategy_from_env)
from training_helpers.configs import (  # noqa: E402
    kill_config, kill_task, multi_worker_config, multi_worker_task)
from training_helpers.toy_tasks import Regression, weights  # noqa: E402

HELPERS = Path(__file__).parent / "training_helpers"


def config(**overrides):
    """A small config for the toy tasks; only what a test changes is spelled out there."""
    base = dict(steps=8, global_batch_size=8, learning_rate=0.05, warmup_steps=0,
                decay="constant", checkpoint_every=1000, log_every=1000, media_every=1000)
    return TrainConfig(**{**base, **overrides})


def ckpt_dir(run_dir):
    return os.path.join(run_dir, "checkpoints")


def checkpoint_tensors(run_dir):
    path = tf.train.latest_checkpoint(ckpt_dir(run_dir))
    reader = tf.train.load_checkpoint(path)
    return {name: reader.get_tensor(name) for name, _ in tf.train.list_variables(path)
            if name != "_CHECKPOINTABLE_OBJECT_GRAPH"}


def scalars(run_dir):
    """{tag: {step: value}} from run_dir/tensorboard."""
    found = {}
    for event_file in sorted(Path(run_dir, "tensorboard").glob("events.out.tfevents.*")):
        for event in tf.compat.v1.train.summary_iterator(str(event_file)):
            for value in event.summary.value:
                found.setdefault(value.tag, {})[event.step] = tf.make_ndarray(value.tensor)
    return found


# --- config, schedule, strategy -------------------------------------------------------------


@pytest.mark.parametrize("field, value", [
    ("steps", -1), ("global_batch_size", -1), ("learning_rate", 0.0), ("decay", "exp"),
    ("clip_norm", 0.0), ("adam_beta_2", 1.0), ("ema_decay", 1.0), ("warmup_steps", 1.5),
    ("checkpoint_every", 0), ("mixed_precision", "yes"), ("weight_decay", float("nan")),
])
def test_config_rejects_bad_values_naming_the_field(field, value):
    with pytest.raises(JukeboxError, match=rf"TrainConfig\.{field}="):
        config(**{field: value})


def test_config_is_frozen_and_serializable():
    c = config(clip_norm=None, ema_decay=None)
    with pytest.raises(dataclasses.FrozenInstanceError):
        c.steps = 3
    assert TrainConfig(**json.loads(json.dumps(c.to_dict()))) == c


def reference_lr(t, peak, warmup, total, decay):
    if t < warmup:
        return peak * t / warmup
    progress = min(max((t - warmup) / max(total - warmup, 1), 0.0), 1.0)
    return {"linear": peak * (1 - progress), "constant": peak,
            "cosine": peak * 0.5 * (1 + math.cos(math.pi * progress))}[decay]


@pytest.mark.parametrize("decay", ["linear", "cosine", "constant"])
@pytest.mark.parametrize("warmup", [0, 10])
def test_schedule_matches_numpy_reference(decay, warmup):
    schedule = WarmupDecay(2e-3, warmup, 110, decay)
    steps = np.arange(0, 130)
    got = schedule(tf.constant(steps)).numpy()
    want = np.array([reference_lr(t, 2e-3, warmup, 110, decay) for t in steps])
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-10)
    assert got[0] == pytest.approx(0.0 if warmup else 2e-3)
    if decay != "constant":
        assert got[110] == pytest.approx(0.0, abs=1e-10)
        assert got[-1] == pytest.approx(0.0, abs=1e-10)


def test_schedule_hand_values_and_config_round_trip():
    s = WarmupDecay(1.0, 10, 110, "cosine")
    assert float(s(5)) == pytest.approx(0.5)
    assert float(s(10)) == pytest.approx(1.0)
    assert float(s(35)) == pytest.approx(0.5 * (1 + math.cos(math.pi / 4)), rel=1e-6)
    assert float(s(60)) == pytest.approx(0.5, rel=1e-6)
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(s))
    assert isinstance(restored, WarmupDecay) and restored.get_config() == s.get_config()


def test_cluster_size_reads_tf_config():
    assert cluster_size(None) == 0
    two = {"cluster": {"worker": ["a:1", "b:2"]}, "task": {"type": "worker", "index": 0}}
    assert cluster_size(json.dumps(two)) == 2
    assert cluster_size(json.dumps({"cluster": {"chief": ["a:1"], "worker": ["b:2"]}})) == 2
    assert cluster_size(json.dumps({"cluster": {"worker": ["a:1"]}})) == 1
    with pytest.raises(JukeboxError, match="TF_CONFIG is not a JSON object"):
        cluster_size("{nope")
    with pytest.raises(JukeboxError, match="parameter-server"):
        cluster_size(json.dumps({"cluster": {"worker": ["a:1"], "ps": ["b:2"]}}))


def test_strategy_from_env_picks_multi_worker_for_two_workers(monkeypatch):
    # The real MultiWorkerMirroredStrategy would start a server: replaced by a recorder here;
    # the 2-process test below checks the real type from the real TF_CONFIG.
    made = []
    monkeypatch.setattr(tf.distribute, "MultiWorkerMirroredStrategy",
                        lambda: made.append(1) or "MW")
    two_workers = {"cluster": {"worker": ["localhost:1", "localhost:2"]},
                   "task": {"type": "worker", "index": 1}}
    monkeypatch.setenv("TF_CONFIG", json.dumps(two_workers))
    assert strategy_from_env() == "MW" and made == [1]
    monkeypatch.setenv("TF_CONFIG", json.dumps({"cluster": {"worker": ["localhost:1"]}}))
    assert strategy_from_env() is tf.distribute.get_strategy()
    monkeypatch.undo()  # the real strategy class again, for is_chief's isinstance
    monkeypatch.delenv("TF_CONFIG", raising=False)
    default = strategy_from_env()
    assert default is tf.distribute.get_strategy() and is_chief(default)


def test_chief_is_the_chief_task_else_worker_zero():
    assert is_chief_task(None, None, False)
    assert is_chief_task("worker", 0, False) and not is_chief_task("worker", 1, False)
    assert is_chief_task("chief", 0, True) and not is_chief_task("worker", 0, True)
    assert not is_chief_task("evaluator", 0, False)


def test_local_worker_environments_form_one_cluster(monkeypatch):
    from jukebox_tf.training.local_workers import check_can_spawn, worker_env

    ports = [5001, 5002, 5003]
    envs = [worker_env(k, ports, threads=1, base={"PATH": "/bin"}) for k in range(3)]
    configs = [json.loads(e["TF_CONFIG"]) for e in envs]
    assert [c["task"] for c in configs] == [{"type": "worker", "index": k} for k in range(3)]
    assert all(c["cluster"] == {"worker": [f"localhost:{p}" for p in ports]} for c in configs)
    assert [cluster_size(e["TF_CONFIG"]) for e in envs] == [3, 3, 3]
    assert [is_chief_task(c["task"]["type"], c["task"]["index"], False)
            for c in configs] == [True, False, False]
    assert envs[0]["TF_NUM_INTRAOP_THREADS"] == envs[0]["TF_NUM_INTEROP_THREADS"] == "1"
    assert envs[0]["PATH"] == "/bin"

    monkeypatch.delenv("TF_CONFIG", raising=False)
    check_can_spawn(2, 4)
    with pytest.raises(JukeboxError, match="--local-workers must be at least 1, not 0"):
        check_can_spawn(0, 4)
    with pytest.raises(JukeboxError, match="--batch-size 5 is not divisible by the 2 local"):
        check_can_spawn(2, 5)
    monkeypatch.setenv("TF_CONFIG", json.dumps({"cluster": {"worker": ["a:1", "b:2"]}}))
    with pytest.raises(JukeboxError, match="TF_CONFIG is set"):
        check_can_spawn(2, 4)


# --- the loop on the default strategy ------------------------------------------------------


def test_loss_falls_and_run_dir_has_config_task_and_tensorboard(tmp_path):
    task = Regression(global_batch_size=16)
    c = config(steps=150, global_batch_size=16, learning_rate=0.1, warmup_steps=10,
               decay="linear", log_every=10, media_every=50, checkpoint_every=50)
    result = train(task, c, str(tmp_path), progress=False)
    logged = scalars(tmp_path)
    losses = logged["loss"]
    assert losses[150] < 0.05 * losses[10], losses
    assert result["step"] == 150.0 and result["skipped_steps"] == 0.0
    assert result["loss"] == pytest.approx(float(losses[150]))
    assert all(isinstance(v, float) for v in result.values())
    for tag in ("loss", "mae", "learning_rate", "steps_per_second", "grad_norm", "skipped_steps"):
        assert sorted(logged[tag]) == list(range(10, 151, 10)), tag
    assert sorted(logged["pred"]) == [50, 100, 150]  # the task's media summaries
    # The update of step 150 is the optimizer's 150th: iteration 149 of the schedule.
    assert logged["learning_rate"][150] == pytest.approx(
        reference_lr(149, 0.1, 10, 150, "linear"), rel=1e-5)
    assert json.loads((tmp_path / "train_config.json").read_text()) == c.to_dict()
    assert json.loads((tmp_path / "task.json").read_text()) == task.config_dict()
    assert not list(tmp_path.glob("*.tmp*"))
    assert sorted(p.name for p in Path(ckpt_dir(tmp_path)).glob("*.index")) == [
        "ckpt-100.index", "ckpt-150.index", "ckpt-50.index"]


def test_nan_guard_skips_exactly_the_poisoned_steps(tmp_path):
    # Data index i is trained on at step i + 1: steps 3 and 6 see a NaN loss.
    task = Regression(nan_steps=(2, 5))
    result = train(task, config(steps=8, media_every=1, log_every=1, ema_decay=None),
                   str(tmp_path), progress=False)
    trajectory = [task.initial_weights] + [w for _, w in task.trajectory]
    assert [s for s, _ in task.trajectory] == list(range(1, 9))
    for step in range(1, 9):
        unchanged = all(np.array_equal(a, b)
                        for a, b in zip(trajectory[step - 1], trajectory[step]))
        assert unchanged == (step in (3, 6)), step
    assert result["skipped_steps"] == 2.0
    logged = scalars(tmp_path)
    assert [int(logged["skipped_steps"][s]) for s in range(1, 9)] == [0, 0, 1, 1, 1, 2, 2, 2]
    assert math.isnan(logged["loss"][3]) and math.isfinite(logged["loss"][4])
    tensors = checkpoint_tensors(tmp_path)
    assert tensors["optimizer/_iterations/.ATTRIBUTES/VARIABLE_VALUE"] == 6
    assert tensors["skipped/.ATTRIBUTES/VARIABLE_VALUE"] == 2
    assert tensors["step/.ATTRIBUTES/VARIABLE_VALUE"] == 8


def test_ema_equals_numpy_ema_of_the_weight_trajectory(tmp_path):
    task = Regression(hidden=3)
    decay = 0.7
    train(task, config(steps=6, media_every=1, ema_decay=decay, learning_rate=0.1), str(tmp_path),
          progress=False)
    expected = task.initial_weights
    for t, (_, w) in enumerate(task.trajectory, start=1):
        d = min(decay, (1 + t) / (10 + t))  # the warm-up: 2/11, 3/12, ... up to 0.7
        expected = [d * e + (1 - d) * x for e, x in zip(expected, w)]
    final = task.trajectory[-1][1]
    ema = weights(restore_for_eval(task, str(tmp_path), use_ema=True))
    raw = weights(restore_for_eval(task, str(tmp_path), use_ema=False))
    for got, want, last, r in zip(ema, expected, final, raw):
        np.testing.assert_allclose(got, want, atol=1e-6)
        np.testing.assert_array_equal(r, last)
    assert max(np.max(np.abs(e - w)) for e, w in zip(ema, final)) > 1e-3


def test_restore_for_eval_builds_in_the_precision_asked_for(tmp_path):
    task = Regression(hidden=3)
    train(task, config(steps=2), str(tmp_path), progress=False)
    full = restore_for_eval(task, str(tmp_path), use_ema=False)
    half = restore_for_eval(task, str(tmp_path), use_ema=False, precision="bfloat16")
    assert {layer.compute_dtype for layer in half.layers} == {"bfloat16"}
    assert {layer.compute_dtype for layer in full.layers} == {"float32"}
    assert keras.mixed_precision.dtype_policy().name == "float32"  # put back
    for a, b in zip(weights(full), weights(half)):
        np.testing.assert_array_equal(a, b)  # float32 weights either way
    with pytest.raises(JukeboxError, match="precision: 'float16' is not one of"):
        restore_for_eval(task, str(tmp_path), precision="float16")


def test_resume_continues_exactly_like_an_uninterrupted_run(tmp_path):
    # Constant-after-warmup schedule: the same whatever `steps` is, so N steps then a resume
    # to 2N must equal 2N straight, down to Adam's moments, the EMA and the step counters.
    n = 6

    def make_config(steps):
        return config(steps=steps, warmup_steps=3, clip_norm=0.3, ema_decay=0.9,
                      checkpoint_every=4, log_every=2)

    straight, first, resumed = (Regression(hidden=8, fixed_data=True) for _ in range(3))
    train(straight, make_config(2 * n), str(tmp_path / "straight"), progress=False)
    train(first, make_config(n), str(tmp_path / "split"), progress=False)
    result = train(resumed, make_config(2 * n), str(tmp_path / "split"), resume=True,
                   progress=False)
    assert result["step"] == 2 * n
    want, got = checkpoint_tensors(tmp_path / "straight"), checkpoint_tensors(tmp_path / "split")
    assert sorted(want) == sorted(got)
    for name in want:
        if name != "save_counter/.ATTRIBUTES/VARIABLE_VALUE":
            np.testing.assert_allclose(got[name], want[name], atol=1e-6, err_msg=name)
    assert got["optimizer/_iterations/.ATTRIBUTES/VARIABLE_VALUE"] == 2 * n
    # The resumed run asked for a new data order instead of replaying the first batches.
    assert first.seeds == [0] and resumed.seeds == [dataset_seed(0, n)] != [0]


def test_resume_flags(tmp_path, capsys):
    run_dir = str(tmp_path / "run")
    result = train(Regression(), config(steps=2), run_dir, resume=True, progress=False)
    assert result["step"] == 2.0 and "no checkpoint" in capsys.readouterr().err
    with pytest.raises(JukeboxError, match="already has checkpoints.*resume"):
        train(Regression(), config(steps=4), run_dir, progress=False)
    result = train(Regression(), config(steps=2), run_dir, resume=True, progress=False)
    assert result["step"] == 2.0 and "nothing to train" in capsys.readouterr().err


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_signal_saves_a_checkpoint_and_returns(tmp_path, signum):
    def send_at_step_4(model, step):
        if step == 4:
            os.kill(os.getpid(), signum)

    before = signal.getsignal(signum)
    task = Regression(hook=send_at_step_4)
    result = train(task, config(steps=50, media_every=1, checkpoint_every=100), str(tmp_path),
                   progress=False)
    # The flag is seen by the step after the signal, which saves and stops.
    assert result["step"] == 5.0
    assert tf.train.latest_checkpoint(ckpt_dir(tmp_path)).endswith("ckpt-5")
    assert signal.getsignal(signum) is before
    np.testing.assert_array_equal(
        weights(restore_for_eval(task, str(tmp_path), use_ema=False))[0], weights(task.model)[0])
    result = train(Regression(), config(steps=7), str(tmp_path), resume=True, progress=False)
    assert result["step"] == 7.0


def test_mixed_precision_trains_and_logs_the_loss_scale(tmp_path):
    task = Regression(hidden=8)
    result = train(task, config(steps=20, mixed_precision=True, log_every=5, learning_rate=0.01),
                   str(tmp_path), progress=False)
    assert math.isfinite(result["loss"]) and result["step"] == 20.0
    assert 1.0 <= result["loss_scale"] <= 2.0 ** 15
    assert sorted(scalars(tmp_path)["loss_scale"]) == [5, 10, 15, 20]
    assert task.model.layers[0].dtype_policy.name == "mixed_float16"
    assert keras.mixed_precision.dtype_policy().name == "float32"  # put back afterwards
    assert all(np.isfinite(w).all() for w in weights(restore_for_eval(task, str(tmp_path))))


def test_compiled_step_builds_under_the_mixed_precision_policy():
    # The benchmarks time this step: it must compute in the precision `train` would.
    step, iterator, model = compiled_step(Regression(hidden=8), config(mixed_precision="bfloat16"))
    assert model.layers[0].dtype_policy.name == "mixed_bfloat16"
    assert keras.mixed_precision.dtype_policy().name == "float32"  # put back afterwards
    assert math.isfinite(float(step(iterator, False)[0]["loss"]))


def test_weight_decay_switches_to_adamw_with_decoupled_decay(tmp_path):
    # One step from the same start on the same batch: AdamW first does w -= lr * wd * w.
    lr, wd = 0.05, 0.5
    plain, decayed = Regression(), Regression()
    train(plain, config(steps=1), str(tmp_path / "plain"), progress=False)
    train(decayed, config(steps=1, weight_decay=wd), str(tmp_path / "decayed"), progress=False)
    for w0, a, b in zip(plain.initial_weights, weights(plain.model), weights(decayed.model)):
        np.testing.assert_allclose(b - a, -lr * wd * w0, atol=1e-6)


def test_restore_variables_reads_what_checkpoint_restore_reads(tmp_path):
    """One variable at a time, under the keys TF gives them (names with '.' and '/' escaped,
    nested objects), the same values as tf.train.Checkpoint.restore; a file that does not
    match gives restore's error."""
    from jukebox_tf.training import checkpoints

    def tree(fill=None):
        def var(value):
            return tf.Variable(np.zeros_like(value) if fill is not None else value)

        inner = tf.Module()
        inner.w = var(np.arange(12, dtype=np.float32).reshape(3, 4))
        return {"a.b": var(np.array([1.5, -2.0], np.float32)),
                "c/d": var(np.array([7, 8, 9], np.int64)), "inner": inner}

    path = tf.train.Checkpoint(**tree()).save(str(tmp_path / "ckpt"))
    expected, got = tree(fill=0), tree(fill=0)
    tf.train.Checkpoint(**expected).restore(path).assert_existing_objects_matched()
    checkpoints.restore_variables(tf.train.Checkpoint(**got), path)
    for a, b in ((expected["a.b"], got["a.b"]), (expected["c/d"], got["c/d"]),
                 (expected["inner"].w, got["inner"].w)):
        assert b.numpy().any()
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    wrong = tree(fill=0)
    wrong["inner"].w = tf.Variable(np.zeros([4, 3], np.float32))
    with pytest.raises(JukeboxError, match="does not match what this run builds"):
        checkpoints.restore_variables(tf.train.Checkpoint(**wrong), path)


def test_restore_for_eval_errors(tmp_path):
    with pytest.raises(JukeboxError, match="no checkpoint to restore"):
        restore_for_eval(Regression(), str(tmp_path))
    train(Regression(), config(steps=2, ema_decay=None), str(tmp_path), progress=False)
    with pytest.raises(JukeboxError, match="no EMA weights.*use_ema=False"):
        restore_for_eval(Regression(), str(tmp_path))
    with pytest.raises(JukeboxError, match="does not match what this run builds"):
        restore_for_eval(Regression(hidden=5), str(tmp_path), use_ema=False)
    with pytest.raises(JukeboxError, match="does not match what this run builds.*ema_decay"):
        train(Regression(), config(steps=4, ema_decay=0.9), str(tmp_path), resume=True,
              progress=False)
    assert len(restore_for_eval(Regression(), str(tmp_path), use_ema=False).weights) == 2


# --- damaged checkpoints ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    """A run with checkpoints at steps 3 and 6 (a fresh copy per test: tests damage it)."""
    run_dir = tmp_path_factory.mktemp("trained") / "run"
    train(Regression(), config(steps=6, checkpoint_every=3), str(run_dir), progress=False)
    return run_dir


def truncate(path):
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def scramble(path):
    path.write_bytes(random.Random(0).randbytes(path.stat().st_size))


DAMAGE = {
    "garbage state file": (lambda d: (d / "checkpoint").write_text("\x00not a proto {{"),
                           "checkpoint: not a valid checkpoint state file"),
    "state names a missing checkpoint": (
        lambda d: [p.unlink() for p in d.glob("ckpt-6.*")], "ckpt-6.index does not exist"),
    "truncated index": (lambda d: truncate(d / "ckpt-6.index"), "cannot restore checkpoint"),
    "garbage index": (lambda d: scramble(d / "ckpt-6.index"), "cannot restore checkpoint"),
    "truncated data": (lambda d: truncate(d / "ckpt-6.data-00000-of-00001"),
                       "cannot restore checkpoint"),
    "garbage data": (lambda d: scramble(d / "ckpt-6.data-00000-of-00001"),
                     "cannot restore checkpoint"),
}


@pytest.mark.parametrize("damage", DAMAGE)
def test_damaged_checkpoint_gives_a_clear_error(trained_run, tmp_path, damage):
    run_dir = tmp_path / "run"
    shutil.copytree(trained_run, run_dir)
    damage_fn, message = DAMAGE[damage]
    damage_fn(run_dir / "checkpoints")
    for attempt in (lambda: train(Regression(), config(steps=9), str(run_dir), resume=True,
                                  progress=False),
                    lambda: restore_for_eval(Regression(), str(run_dir))):
        with pytest.raises(JukeboxError) as e:
            attempt()
        text = str(e.value)
        assert message in text and str(run_dir / "checkpoints") in text
        assert "ckpt-3" in text and "model_checkpoint_path" in text, text  # how to fix it


def test_following_the_error_advice_resumes_from_the_earlier_checkpoint(trained_run, tmp_path):
    run_dir = tmp_path / "run"
    shutil.copytree(trained_run, run_dir)
    scramble(run_dir / "checkpoints" / "ckpt-6.index")
    (run_dir / "checkpoints" / "checkpoint").write_text('model_checkpoint_path: "ckpt-3"\n')
    with pytest.raises(JukeboxError):  # still there and still damaged: not silently skipped
        checkpoints.restore(tf.train.Checkpoint(model=Regression().build()),
                            str(run_dir / "checkpoints" / "ckpt-6"), partial=True)
    task = Regression()
    result = train(task, config(steps=5, media_every=1), str(run_dir), resume=True,
                   progress=False)
    assert result["step"] == 5.0 and [s for s, _ in task.trajectory] == [4, 5]


# --- other strategies and processes (subprocesses) -----------------------------------------


@pytest.fixture(scope="session")
def subprocess_env(tmp_path_factory):
    """Environment for helper processes. Byte-code goes to a shared cache: with
    PYTHONDONTWRITEBYTECODE set, each process would otherwise recompile TensorFlow (~15 s)."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONDONTWRITEBYTECODE", "TF_CONFIG")}
    env.update(PYTHONPYCACHEPREFIX=str(tmp_path_factory.mktemp("pycache")),
               TF_CPP_MIN_LOG_LEVEL="2")
    return env


def run_helper(script, *args, env, timeout=300):
    proc = subprocess.run([sys.executable, str(HELPERS / script), *map(str, args)], env=env,
                          capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"{script} exited {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


@pytest.mark.slow
def test_mirrored_two_replicas_equal_single_device(subprocess_env):
    out = run_helper("mirrored_check.py", env=subprocess_env)
    result = json.loads(out.split("RESULT ", 1)[1])
    # Plain Keras 3 in a custom loop: apply() in replica context SUMS the replicas' gradients...
    assert result["keras_sgd_update"] == pytest.approx(3.0)
    # ...but global_clipnorm clips each replica's gradient before that sum (1.8, not 1.0),
    # which is why the loop reduces, clips and checks gradients itself.
    assert result["keras_clipnorm_update"] == pytest.approx(1.8)
    # The loop's Adam takes the summed gradient as is; Keras' own would double it here.
    assert result["loop_adam_update"] == pytest.approx(3.0, rel=1e-3)
    assert result["keras_adam_update"] == pytest.approx(6.0, rel=1e-3)
    mirrored, single = result["mirrored"], result["single"]
    assert (mirrored["replicas"], single["replicas"]) == (2, 1)
    assert mirrored["replica_copies_max_diff"] == 0.0
    # Every replica's shadow updated: 1 -> 3 with the first update's decay min(0.5, 2/11).
    np.testing.assert_allclose(result["ema_replica_copies"], [[1 + 2 * 9 / 11] * 3] * 2,
                               rtol=1e-6)
    for key in ("weights", "ema"):
        for a, b in zip(mirrored[key], single[key]):
            np.testing.assert_allclose(a, b, atol=1e-5, err_msg=key)
    # Step 5 was NaN on replica 1 only: both replicas skipped it, like the single device.
    assert mirrored["metrics"]["skipped_steps"] == single["metrics"]["skipped_steps"] == 1.0
    for key in ("loss", "grad_norm", "learning_rate"):
        assert mirrored["metrics"][key] == pytest.approx(single["metrics"][key], rel=1e-5)


@pytest.mark.slow
def test_two_workers_agree_with_each_other_and_with_one_process(subprocess_env, tmp_path):
    import portpicker

    ports = ",".join(str(portpicker.pick_unused_port()) for _ in range(2))
    worker_tmp = tmp_path / "worker_tmp"
    worker_tmp.mkdir()
    env = {**subprocess_env, "TMPDIR": str(worker_tmp)}
    # 20 steps, but the chief gets SIGTERM at step 14: the other worker learns it only through
    # the all-reduced stop flag, and both must stop after step 15.
    run_dir, steps, signal_at = tmp_path / "run", 20, 14
    procs = [subprocess.Popen(
        [sys.executable, str(HELPERS / "worker.py"), str(i), ports, str(run_dir),
         str(tmp_path / f"worker{i}.json"), str(steps), str(signal_at)],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for i in range(2)]
    outputs = []
    deadline = time.monotonic() + 300
    try:
        for proc in procs:
            outputs.append(proc.communicate(timeout=max(deadline - time.monotonic(), 1))[0])
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    for i, (proc, out) in enumerate(zip(procs, outputs)):
        assert proc.returncode == 0, f"worker {i} exited {proc.returncode}:\n{out[-5000:]}"
    results = [json.loads((tmp_path / f"worker{i}.json").read_text()) for i in range(2)]
    assert [r["multi_worker"] for r in results] == [True, True]
    assert [r["chief"] for r in results] == [True, False]
    assert [r["metrics"]["step"] for r in results] == [signal_at + 1] * 2
    for a, b in zip(results[0]["weights"], results[1]["weights"]):
        np.testing.assert_array_equal(a, b)

    reference = multi_worker_task(signal_at)
    metrics = train(reference, multi_worker_config(steps), str(tmp_path / "single"),
                    strategy=tf.distribute.get_strategy(), progress=False)
    for a, b in zip(results[0]["weights"], weights(reference.model)):
        np.testing.assert_allclose(a, b, atol=1e-5)
    assert results[0]["metrics"]["loss"] == pytest.approx(metrics["loss"], rel=1e-5)
    # Only the chief wrote to run_dir; the other worker's checkpoint copies are gone.
    assert metrics["step"] == signal_at + 1
    assert sorted(p.name for p in (run_dir / "checkpoints").glob("*.index")) == [
        "ckpt-10.index", "ckpt-15.index"]
    assert list((run_dir / "tensorboard").glob("events.out.tfevents.*"))
    assert list(worker_tmp.iterdir()) == []


def read_log(path):
    """{step: flat weights} from a kill_target log; a line cut by the kill is ignored."""
    steps = {}
    for line in path.read_text().splitlines():
        try:
            step, flat = json.loads(line)
        except ValueError:
            continue
        steps[step] = flat
    return steps


@pytest.mark.slow
def test_sigkill_at_random_moments_then_resume(subprocess_env, tmp_path):
    run_dir = tmp_path / "run"
    rng = random.Random(1234)
    trajectory, restored = {}, 0
    # checkpoint_every=1: saving takes much of the time; kill 1 waits for TF's temporary
    # shard directory, i.e. strikes in the middle of a save.
    for kill, (every, during_save) in enumerate([(1, False), (1, True), (3, False)]):
        log = tmp_path / f"log{kill}.jsonl"
        log.touch()
        proc = subprocess.Popen(
            [sys.executable, str(HELPERS / "kill_target.py"), str(run_dir), str(log), str(every)],
            env=subprocess_env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        try:
            deadline = time.monotonic() + 120
            while len(read_log(log)) < 3:  # running: resumed and a few steps taken
                assert proc.poll() is None, proc.stderr.read()
                assert time.monotonic() < deadline, "training did not start"
                time.sleep(0.05)
            if during_save:
                while not list((run_dir / "checkpoints").glob("ckpt-*_temp*")):
                    assert time.monotonic() < deadline, "no save seen"
            else:
                time.sleep(rng.uniform(0.0, 0.4))
        finally:
            proc.kill()
            proc.wait()
            proc.stderr.close()
        steps = read_log(log)
        assert min(steps) == restored + 1  # this process resumed where the last one saved
        trajectory.update(steps)
        path = checkpoints.latest_checkpoint(str(run_dir / "checkpoints"))
        step = int(path.rsplit("-", 1)[1])
        assert step == restored or step % every == 0, (step, every)
        assert restored <= step <= max(steps)
        # The checkpoint is complete: exactly the weights the killed process had at that step.
        model = restore_for_eval(kill_task(), str(run_dir), use_ema=False)
        flat = np.concatenate([w.ravel() for w in weights(model)])
        np.testing.assert_array_equal(flat, np.array(trajectory[step], np.float32))
        restored = step
    result = train(kill_task(), kill_config(1, steps=restored + 3), str(run_dir), resume=True,
                   progress=False)
    assert result["step"] == restored + 3
    assert not list((run_dir / "checkpoints").glob("*_temp*"))  # debris of killed saves


def test_checkpoints_hold_weights_of_sublayers_kept_in_lists(tmp_path):
    # Keras 3 keeps lists of sublayers (the VQ-VAE's per-level encoders) in its own tracked
    # lists, invisible to tf.train.Checkpoint: the weights must still be saved and restored.
    import keras

    class Stack(keras.Model):
        def __init__(self):
            super().__init__()
            self.blocks = [keras.layers.Dense(3, name=f"dense_{i}") for i in range(2)]

        def call(self, x):
            for block in self.blocks:
                x = block(x)
            return x

    class StackTask:
        name = "stack"

        def build(self):
            self.model = Stack()
            self.model(tf.zeros([1, 3]))
            self.initial = [v.numpy() for v in self.model.variables]
            return self.model

        def dataset(self, input_context, seed):
            x = tf.constant(np.arange(12, dtype=np.float32).reshape(4, 3) / 10)
            return tf.data.Dataset.from_tensors((x, -x)).repeat()

        def loss(self, model, batch, training):
            x, y = batch
            return tf.reduce_mean(tf.square(model(x) - y)), {}

    task = StackTask()
    train(task, config(steps=4, warmup_steps=0, learning_rate=0.1, ema_decay=None),
          str(tmp_path), progress=False)
    trained = [v.numpy() for v in task.model.variables]
    assert max(np.abs(a - b).max() for a, b in zip(trained, task.initial)) > 1e-3
    restored = restore_for_eval(StackTask(), str(tmp_path), use_ema=False)
    assert len(restored.variables) == 4
    for got, want in zip(restored.variables, trained):
        np.testing.assert_array_equal(got.numpy(), want)


def test_zero_steps_saves_the_initial_weights(tmp_path):
    """An untrained run (steps 0) still loads: its checkpoint holds the initial weights."""
    task = Regression()
    result = train(task, config(steps=0), str(tmp_path), progress=False)
    assert result["step"] == 0.0
    assert checkpoints.latest_checkpoint(str(tmp_path / "checkpoints")).endswith("ckpt-0")
    initial = task.initial_weights  # restore_for_eval builds a new model with new weights
    loaded = weights(restore_for_eval(task, str(tmp_path), use_ema=False))
    for got, want in zip(loaded, initial):
        np.testing.assert_array_equal(got, want)
    with pytest.raises(JukeboxError, match=r"steps=-1: must be an integer >= 0"):
        config(steps=-1)


def test_tensorboard_dir_option(tmp_path):
    tb = tmp_path / "elsewhere"
    train(Regression(), config(steps=2, log_every=1), str(tmp_path / "run"), progress=False,
          tensorboard_dir=str(tb))
    assert list(tb.glob("events.out.tfevents.*"))
    assert not (tmp_path / "run" / "tensorboard").exists()
