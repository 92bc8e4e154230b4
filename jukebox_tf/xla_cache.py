"""XLA's persistent compilation cache for the commands: a second `sample` (or server start)
loads the compiled token loops instead of compiling them again.

TensorFlow reads `--tf_xla_persistent_cache_directory` from TF_XLA_FLAGS once, so `enable`
runs before TensorFlow is imported. Its cache keys name the computation, not the CPU, so
the folder is one per host kind (CPU flags, machine, TensorFlow version): a home directory
shared by machines of different CPU kinds never hands one the other's machine code.
JUKEBOX_TF_XLA_CACHE picks the folder, or turns the cache off ("off").
"""

from __future__ import annotations

import hashlib
import os
import platform

ENV = "JUKEBOX_TF_XLA_CACHE"
FLAG = "--tf_xla_persistent_cache_directory"
DEFAULT_ROOT = os.path.join("~", ".cache", "jukebox-tf", "xla")


def host_kind() -> str:
    """A short name for what compiled code depends on: the CPU's feature flags, the machine
    and the TensorFlow version."""
    flags = ""
    try:
        with open("/proc/cpuinfo") as f:
            flags = next((line for line in f if line.startswith("flags")), "")
    except OSError:
        flags = platform.processor()
    try:
        from importlib.metadata import version

        tf_version = version("tensorflow")
    except Exception:  # noqa: BLE001 - any other install: still one folder per host
        tf_version = "unknown"
    digest = hashlib.sha256(f"{flags}|{platform.machine()}|{tf_version}".encode())
    return f"tf{tf_version}-{platform.machine()}-{digest.hexdigest()[:12]}"


def enable(environ=None) -> str | None:
    """Points TF_XLA_FLAGS at this host kind's cache folder (made if missing) and returns it;
    None, changing nothing, when the cache is off or TF_XLA_FLAGS already names one."""
    environ = os.environ if environ is None else environ
    choice = environ.get(ENV, "")
    flags = environ.get("TF_XLA_FLAGS", "")
    if choice.lower() == "off" or FLAG in flags:
        return None
    root = os.path.expanduser(choice or DEFAULT_ROOT)
    folder = os.path.join(root, host_kind())
    try:
        os.makedirs(folder, exist_ok=True)
    except OSError:
        return None  # a read-only home: compile every time, as without the cache
    environ["TF_XLA_FLAGS"] = f"{flags} {FLAG}={folder}".strip()
    return folder
