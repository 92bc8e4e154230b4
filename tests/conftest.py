import contextlib
import os
import signal
import subprocess
import sys
import wave

import numpy as np
import pytest
import soundfile as sf

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def tone(seconds, rate, freq=440.0, amp=0.5, channels=1):
    t = np.arange(int(round(seconds * rate))) / rate
    x = (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)
    return x if channels == 1 else np.stack([x * (0.5 + 0.5 * c) for c in range(channels)], 1)


def write_wav_header_only(path, rate, frames=100, channels=1):
    """A 16-bit WAV with any sample rate (soundfile refuses some; `wave` writes anything)."""
    with wave.open(str(path), "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(b"\x00\x01" * frames * channels)


REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_cli(*args, check=False, timeout=600, **kw):
    """Runs `python -m jukebox_tf ARGS` in a subprocess; returns CompletedProcess."""
    proc = subprocess.run([sys.executable, "-m", "jukebox_tf", *map(str, args)],
                          capture_output=True, text=True, timeout=timeout, **kw)
    if check and proc.returncode != 0:
        raise AssertionError(f"exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}")
    return proc


@contextlib.contextmanager
def server_process(config, model: str, timeout: float = 300.0):
    """`python -m serving --model-config CONFIG` at a free port, from when MODEL is available
    until the block ends (then SIGTERM): yields the gRPC target."""
    import portpicker

    from serving import client

    port = portpicker.pick_unused_port()
    env = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.Popen([sys.executable, "-m", "serving", "--model-config", str(config),
                             "--port", str(port), "--rest-port", "0", "--log-level", "WARNING"],
                            env=env, stdin=subprocess.DEVNULL)
    try:
        target = f"127.0.0.1:{port}"
        client.wait_until_available(target, model, timeout=timeout)
        yield target
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture
def cli():
    """`run_cli` as a fixture."""
    return run_cli


@pytest.fixture
def write_audio(tmp_path):
    def write(rel, audio, rate, **kw):
        path = tmp_path / "in" / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        sf.write(str(path), audio, rate, **kw)
        return path

    return write
