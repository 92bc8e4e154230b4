"""`pip install jukebox-tf` as a user does it: a wheel of this checkout, installed into a fresh
virtualenv with only its declared dependencies (at the lock's versions), run through its
console script from a folder outside the checkout, without PYTHONPATH. A module the code
imports that setup.cfg does not declare fails here instead of on a user's machine.

Two environments. The core alone (no extras) runs the commands a user starts with:
make-demo-data, ingest, train-vqvae, encode, train-prior, sample, on the tiny presets; it also
imports every module of `jukebox_tf`. The one with `[pipeline,serving]` imports every module of
the three packages (the pipeline and the server need minutes to run; test_pipeline*.py and
test_serving*.py run them). Both are cached under VENV_ROOT like the Makefile's venv, keyed by
the lock and the wheel's declared requirements, so a later run only reinstalls the wheel.
"""

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
LOCK = REPO / "requirements.txt"
VENV_ROOT = Path(os.environ.get("VENV_ROOT") or Path(
    os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "jukebox-tf")
# The Makefile installs uv into the project venv, which runs the tests.
UV = Path(sys.executable).parent / "uv"
EXTRAS_ONLY = ("tfx", "apache_beam")  # what the core must not have pulled in

# Imports every module of the packages named in argv (walk_packages imports the subpackages
# themselves); prints where each package was imported from and which EXTRAS_ONLY are present.
IMPORT_ALL = f"""
import importlib, importlib.util, json, pkgutil, sys
packages = [importlib.import_module(name) for name in sys.argv[1:]]
for p in packages:
    for m in pkgutil.walk_packages(p.__path__, p.__name__ + "."):
        if not m.name.endswith(".__main__"):  # runs the command line
            importlib.import_module(m.name)
print(json.dumps({{"files": {{p.__name__: p.__file__ for p in packages}},
                  "present": [n for n in {EXTRAS_ONLY!r} if importlib.util.find_spec(n)]}}))
"""


def run(argv, cwd=None, env=None, timeout=600) -> str:
    done = subprocess.run([str(a) for a in argv], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=timeout)
    assert done.returncode == 0, f"{argv}: exit {done.returncode}\n{done.stdout}\n{done.stderr}"
    return done.stdout


def build_wheel(out: Path) -> Path:
    """The wheel of the checkout's files (tracked, or new and not ignored), built from a copy:
    setuptools reuses a stale build/ folder, which would ship modules deleted since."""
    src = out / "src"
    listed = run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], REPO)
    for rel in filter(None, listed.split("\0")):
        if rel.split("/")[0] in ("tests", "benchmarks") or not (REPO / rel).is_file():
            continue
        (src / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / rel, src / rel)
    # The project venv's setuptools (from the lock), as the Dockerfile builds: no download.
    run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
         "-w", out / "dist", src])
    (wheel,) = (out / "dist").glob("jukebox_tf-*.whl")
    return wheel


def declared_requirements(wheel: Path) -> list[str]:
    with zipfile.ZipFile(wheel) as z:
        (name,) = [n for n in z.namelist() if n.endswith(".dist-info/METADATA")]
        lines = z.read(name).decode().splitlines()
    return [line for line in lines if line.startswith(("Requires-Dist:", "Provides-Extra:"))]


def uv_install(python: Path, requirement: str, *flags: str) -> None:
    run([UV, "pip", "install", "-q", "--python", python, requirement, "-c", LOCK, *flags])


@contextlib.contextmanager
def locked(path: Path):
    with open(path, "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        yield


@contextlib.contextmanager
def installed(wheel: Path, extras: str):
    """A venv with the wheel (and `extras`) and nothing else, held for this test alone: its
    dependencies installed once per lock and declared requirements (under the Makefile's
    creation lock), the wheel reinstalled on every use. Yields the venv's folder."""
    key = hashlib.sha256("\n".join([LOCK.read_text(), extras, *declared_requirements(wheel)])
                         .encode()).hexdigest()[:16]
    venv = VENV_ROOT / f"wheeltest-py310-{extras.replace(',', '+') or 'core'}-{key}"
    python, ready = venv / "bin" / "python", venv / ".jukebox-tf-ready"
    requirement = f"{wheel}[{extras}]" if extras else str(wheel)
    VENV_ROOT.mkdir(parents=True, exist_ok=True)
    if not ready.exists():
        with locked(VENV_ROOT / ".create.lock"):
            if not ready.exists():
                shutil.rmtree(venv, ignore_errors=True)
                # The interpreter the project venv was made from, not that venv: a venv of
                # a venv breaks when the project venv is replaced by a new lock's.
                base = Path(sys.base_prefix) / "bin" / "python{}.{}".format(*sys.version_info)
                run([UV, "venv", "-q", "--python", base, venv])
                # Byte-compiled once, as `make venv` does: where PYTHONDONTWRITEBYTECODE is
                # set, each command would otherwise compile TensorFlow's sources again.
                uv_install(python, requirement, "--compile-bytecode")
                ready.touch()
    # Another checkout's run would swap in its own wheel meanwhile.
    with locked(venv / ".in-use.lock"):
        uv_install(python, requirement, "--reinstall-package", "jukebox-tf", "--compile-bytecode")
        yield venv


def start_import_all(venv: Path, packages: list[str], cwd: Path, env: dict):
    """IMPORT_ALL in the background; its output goes to files, which never fill up and
    stall it as an unread pipe would."""
    out, err = (cwd / f"import-all-{venv.name}.{n}" for n in ("out", "err"))
    with open(out, "w") as o, open(err, "w") as e:
        return subprocess.Popen([venv / "bin" / "python", "-c", IMPORT_ALL, *packages],
                                cwd=cwd, env=env, stdout=o, stderr=e), out, err


def check_imported_from(venv: Path, probe) -> dict:
    proc, out, err = probe
    proc.wait(timeout=600)
    assert proc.returncode == 0, f"exit {proc.returncode}\n{err.read_text()}"
    report = json.loads(out.read_text().strip().splitlines()[-1])
    for name, file in report["files"].items():
        file = Path(file).resolve()
        assert file.is_relative_to(venv.resolve() / "lib") and not file.is_relative_to(REPO), \
            (name, file)
    return report


@pytest.mark.slow
def test_wheel_installs_and_runs_without_the_checkout(tmp_path):
    if not UV.exists():
        pytest.fail(f"{UV} is missing: run the tests through `make test`, which installs it")
    work = tmp_path / "work"
    work.mkdir()
    assert not work.resolve().is_relative_to(REPO)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    wheel = build_wheel(tmp_path)

    with contextlib.ExitStack() as stack:
        core = stack.enter_context(installed(wheel, ""))
        full = stack.enter_context(installed(wheel, "pipeline,serving"))
        # Both imports of every module in the background, beside the commands: the commands
        # spend much of their time in single-threaded tracing.
        probes = [start_import_all(core, ["jukebox_tf"], tmp_path, env),
                  start_import_all(full, ["jukebox_tf", "serving", "pipeline"], tmp_path, env)]
        for proc, _, _ in probes:  # ended when a command fails first
            stack.callback(proc.wait)
            stack.callback(proc.kill)

        cli = core / "bin" / "jukebox-tf"
        help_text = run([cli, "--help"], work, env)
        for command in ("make-demo-data", "ingest", "train-vqvae", "encode", "train-prior",
                        "sample", "export", "serve", "pipeline"):
            assert command in help_text
        run([cli, "make-demo-data", "audio", "--artists", 2, "--tracks-per-artist", 1,
             "--track-seconds", 3], work, env)
        run([cli, "ingest", "audio", "data", "--sample-rate", 22050, "--chunk-seconds", 3,
             "--workers", 1, "--quiet"], work, env)
        run([cli, "train-vqvae", "--data", "data", "--preset", "tiny", "--steps", 1,
             "--batch-size", 2, "--out", "vqvae", "--quiet"], work, env)
        run([cli, "encode", "--run", "vqvae", "--data", "data", "--out", "codes", "--quiet"],
            work, env)
        # --lyrics: the lyrics tokenizer (its transliteration, unidecode) runs in training and
        # sampling.
        run([cli, "train-prior", "--level", 2, "--codes", "codes", "--preset", "tiny",
             "--lyrics", "--steps", 1, "--batch-size", 2, "--out", "top", "--quiet"], work, env)
        out = run([cli, "sample", "--prior", "top", "--seconds", 0.5, "--lyrics", "la la",
                   "-o", "samples", "--quiet"], work, env)
        assert "samples/level_2/sample_0.wav" in out
        for produced in ("samples/index.html", "samples/level_2/sample_0.wav",
                         "samples/level_2/spectrograms.png", "samples/alignment.png"):
            assert (work / produced).is_file(), produced

        assert check_imported_from(core, probes[0])["present"] == []
        assert check_imported_from(full, probes[1])["present"] == list(EXTRAS_ONLY)
