"""The house's shape, read from the source: every import (module-level or inside a function)
goes down a floor, never up or sideways, so vqvae/ and prior/ share building blocks from below
(layers/, codes/) and never each other; serving/ stays a thin TF-Serving-API server; the
command line's `--help` starts without TensorFlow."""

import ast
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOP_PACKAGES = ("jukebox_tf", "serving", "pipeline")

# Lowest first. A package imports only from floors below its own; packages on one floor do not
# import each other (vqvae and prior above all). The root package (its __version__) is floor 0.
FLOORS = [
    ["jukebox_tf", "jukebox_tf.errors", "jukebox_tf.storage", "jukebox_tf.xla_cache"],
    ["jukebox_tf.layers", "jukebox_tf.audio"],
    ["jukebox_tf.codes", "jukebox_tf.training"],
    ["jukebox_tf.vqvae", "jukebox_tf.prior"],
    ["jukebox_tf.released", "jukebox_tf.sampling"],
    ["jukebox_tf.export"],
    ["serving"],
    ["pipeline"],
    ["jukebox_tf.cli"],  # the command line, over all it drives
    ["jukebox_tf.__main__"],
]
FLOOR = {package: i for i, floor in enumerate(FLOORS) for package in floor}

# What the server may use of the library: it serves SavedModels, it does not build models.
SERVING_USES = {"jukebox_tf", "jukebox_tf.errors", "jukebox_tf.xla_cache",
                "jukebox_tf.training.checkpoints"}


def modules() -> dict[str, str]:
    """{dotted module name: path} of every module of the three top packages."""
    out = {}
    for top in TOP_PACKAGES:
        for folder, _, files in os.walk(os.path.join(ROOT, top)):
            for name in files:
                if name.endswith(".py"):
                    path = os.path.join(folder, name)
                    dotted = os.path.relpath(path, ROOT)[:-3].replace(os.sep, ".")
                    out[dotted.removesuffix(".__init__")] = path
    return out


MODULES = modules()


def imported(path: str) -> set[str]:
    """The project modules a file imports, anywhere in it: `from a.b import c` counts as a.b.c
    when c is a module, else as a.b."""
    found = set()
    for node in ast.walk(ast.parse(open(path).read(), path)):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [f"{node.module}.{a.name}" for a in node.names]
            found.update(n if n in MODULES else node.module for n in names)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
    return {m for m in found if m.split(".")[0] in TOP_PACKAGES}


def package_of(module: str) -> str:
    """The floor entry a module belongs to: jukebox_tf.prior.task -> jukebox_tf.prior."""
    parts = module.split(".")
    if parts[0] != "jukebox_tf":
        return parts[0]
    return ".".join(parts[:2]) if len(parts) > 1 else "jukebox_tf"


IMPORTS = {(name, target) for name, path in MODULES.items() for target in imported(path)}


def test_every_package_has_a_floor():
    assert {package_of(m) for m in MODULES} <= set(FLOOR), "add new packages to FLOORS"


def test_imports_only_go_down_a_floor():
    wrong = sorted(f"{name} imports {target}" for name, target in IMPORTS
                   if package_of(name) != package_of(target)
                   and FLOOR[package_of(target)] >= FLOOR[package_of(name)])
    assert not wrong, "\n".join(wrong)


def test_vqvae_and_prior_do_not_import_each_other():
    # Implied by the floors; spelled out because it is the rule most easily broken.
    pairs = {("jukebox_tf.vqvae", "jukebox_tf.prior"), ("jukebox_tf.prior", "jukebox_tf.vqvae")}
    wrong = sorted(f"{n} imports {t}" for n, t in IMPORTS
                   if (package_of(n), package_of(t)) in pairs)
    assert not wrong, "\n".join(wrong)


def test_the_library_never_imports_the_pipeline_or_the_server():
    wrong = sorted(f"{n} imports {t}" for n, t in IMPORTS
                   if n.startswith("jukebox_tf.") and package_of(n) != "jukebox_tf.cli"
                   and t.split(".")[0] in ("pipeline", "serving"))
    assert not wrong, "\n".join(wrong)


def test_the_server_uses_only_what_it_serves_with():
    used = {t for n, t in IMPORTS
            if n.split(".")[0] == "serving" and t.split(".")[0] != "serving"}
    assert used <= SERVING_USES, sorted(used - SERVING_USES)


def test_the_rules_see_a_wrong_import(tmp_path):
    """The reader finds an upward import inside a function, as the rules would be blind
    without it."""
    path = tmp_path / "bad.py"
    path.write_text("def f():\n    from jukebox_tf.prior.task import PriorTask\n")
    assert imported(str(path)) == {"jukebox_tf.prior.task"}
    assert FLOOR[package_of("jukebox_tf.prior.task")] >= FLOOR[package_of("jukebox_tf.vqvae")]


@pytest.mark.parametrize("argv", [["--help"], ["sample", "--help"], ["train-prior", "--help"]])
def test_help_does_not_load_tensorflow(argv):
    code = ("import runpy, sys\n"
            f"sys.argv = ['jukebox-tf', *{argv!r}]\n"
            "try:\n    runpy.run_module('jukebox_tf', run_name='__main__')\n"
            "except SystemExit as e:\n    assert e.code == 0, e.code\n"
            "heavy = sorted(m for m in sys.modules if m.split('.')[0] in "
            "('tensorflow', 'keras', 'tfx', 'numpy'))\n"
            "print('HEAVY', heavy)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT,
                         env={**os.environ, "PYTHONPATH": ROOT}, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "HEAVY []" in out.stdout, out.stdout[-2000:]
