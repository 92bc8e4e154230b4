"""The PyTorch reference of the parity tests: a Python 3.11 venv with a CPU build of torch and
Hugging Face transformers' Jukebox, made by `make torchref` (which `make test` runs) from
tests/requirements-torch.txt. Its code runs in a subprocess, so torch never loads into the
TensorFlow process (nor into the product: nothing under jukebox_tf imports it).

    out = run_torch(SCRIPT, "arg", ...)   # `python SCRIPT arg ...` in the reference venv
"""

import hashlib
import os
import subprocess

import pytest

LOCK = os.path.join(os.path.dirname(os.path.abspath(__file__)), "requirements-torch.txt")


def torch_python() -> str:
    """The reference venv's interpreter: $JUKEBOX_TORCH_PYTHON (set by `make test`), else the
    venv `make torchref` makes for this lock."""
    path = os.environ.get("JUKEBOX_TORCH_PYTHON")
    if not path:
        with open(LOCK, "rb") as f:
            digest = hashlib.sha256(f.read()).hexdigest()[:16]
        root = os.environ.get("VENV_ROOT") or os.path.join(
            os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "jukebox-tf")
        path = os.path.join(root, f"torchref-py311-{digest}", "bin", "python")
    if not os.path.exists(path):
        pytest.fail(f"the PyTorch reference venv is missing ({path}): run `make torchref` (`make "
                    f"test` does), or point JUKEBOX_TORCH_PYTHON at a Python with the packages "
                    f"of {LOCK}")
    return path


def run_torch(script: str, *args, timeout: int = 900) -> str:
    """Runs `script` with the reference interpreter; its stdout, or AssertionError with its
    output when it fails."""
    env = dict(os.environ, CUDA_VISIBLE_DEVICES="", TQDM_DISABLE="1", HF_HUB_OFFLINE="1",
               OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "2"),
               TRANSFORMERS_VERBOSITY="error")
    proc = subprocess.run([torch_python(), script, *map(str, args)], capture_output=True,
                          text=True, timeout=timeout, env=env)
    if proc.returncode != 0:
        raise AssertionError(f"the PyTorch reference failed (exit {proc.returncode}): "
                             f"{script} {' '.join(map(str, args))}\n{proc.stdout[-3000:]}\n"
                             f"{proc.stderr[-6000:]}")
    return proc.stdout
