"""XLA's persistent compilation cache: the commands point TensorFlow at one folder per host
kind, and a compiled function lands there."""

import os
import subprocess
import sys

from jukebox_tf import xla_cache

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_enable_sets_the_flag_once_and_respects_the_user(tmp_path):
    env = {xla_cache.ENV: str(tmp_path), "TF_XLA_FLAGS": "--tf_xla_auto_jit=0"}
    folder = xla_cache.enable(env)
    assert folder == str(tmp_path / xla_cache.host_kind()) and os.path.isdir(folder)
    assert env["TF_XLA_FLAGS"] == f"--tf_xla_auto_jit=0 {xla_cache.FLAG}={folder}"
    assert xla_cache.enable(env) is None  # already named: unchanged
    assert env["TF_XLA_FLAGS"].count(xla_cache.FLAG) == 1
    off = {xla_cache.ENV: "off"}
    assert xla_cache.enable(off) is None and "TF_XLA_FLAGS" not in off
    assert xla_cache.host_kind() == xla_cache.host_kind()


def test_a_compiled_function_is_cached_in_the_host_kind_folder(tmp_path):
    script = ("from jukebox_tf import xla_cache; xla_cache.enable(); import tensorflow as tf; "
              "f = tf.function(lambda x: x * 2.0 + 1.0, jit_compile=True); "
              "print(float(f(tf.ones([3]))[0]))")
    env = {k: v for k, v in os.environ.items() if k != "TF_XLA_FLAGS"}
    env.update({xla_cache.ENV: str(tmp_path), "PYTHONPATH": REPO, "TF_CPP_MIN_LOG_LEVEL": "2"})
    proc = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0 and proc.stdout.strip() == "3.0", proc.stderr[-2000:]
    cached = os.listdir(tmp_path / xla_cache.host_kind())
    assert cached and all(name.startswith("xla_compile_cache") for name in cached), cached
