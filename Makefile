# jukebox-tf: `make demo` and `make test` work on a fresh machine with nothing installed by hand.
#
# The virtualenv lives outside the repo, keyed by the hash of the lock, so every clone with the
# same requirements.txt shares it and a second run installs nothing. Override VENV_ROOT to move it.

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

UV_VERSION := 0.13.9
LOCK_HASH := $(shell sha256sum requirements.txt | cut -c1-16)
VENV_ROOT ?= $(or $(XDG_CACHE_HOME),$(HOME)/.cache)/jukebox-tf
VENV := $(VENV_ROOT)/venv-py310-$(LOCK_HASH)
PY := $(VENV)/bin/python
UV := $(VENV)/bin/uv
READY := $(VENV)/.jukebox-tf-ready
COMPILED := $(VENV)/.bytecode-compiled
DEMO_DIR ?= demo_out
PYTEST_ARGS ?=
# Two test processes, a whole file each (module fixtures are built once): much of the suite
# waits on process starts, imports and tracing, so two overlap well even on 2 cores. Files
# go in collection order, not largest first: the benchmarks' tests (one or two tests a file,
# each starting servers and commands of several GB) then run while the workers are fresh,
# not at the end beside two workers grown to 6-13 GB, which ran a 24 GB host out of memory.
TEST_WORKERS ?= 2
XDIST := -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder

# Python 3.10 is required (TFX 1.16 has no release for newer Pythons); pyenv's copy is found
# even when the pyenv shim has no global version selected.
PYTHON310 ?= $(shell for p in python3.10 $(HOME)/.pyenv/versions/3.10*/bin/python3.10 \
	/usr/local/bin/python3.10 /usr/bin/python3.10; do \
	"$$p" -c 'import sys; assert sys.version_info[:2] == (3, 10)' >/dev/null 2>&1 \
	&& { command -v "$$p" || echo "$$p"; } && break; done | head -n 1)

# The PyTorch reference of the parity tests: its own venv (Python 3.11, a CPU torch), keyed by
# the hash of its lock; never the product's venv.
TORCH_LOCK := tests/requirements-torch.txt
TORCHREF := $(VENV_ROOT)/torchref-py311-$(shell sha256sum $(TORCH_LOCK) | cut -c1-16)
PYTHON311 ?= $(shell for p in python3.11 $(HOME)/.pyenv/versions/3.11*/bin/python3.11 \
	/usr/local/bin/python3.11 /usr/bin/python3.11; do \
	"$$p" -c 'import sys; assert sys.version_info[:2] == (3, 11)' >/dev/null 2>&1 \
	&& { command -v "$$p" || echo "$$p"; } && break; done | head -n 1)

# The real encoders the ingest tests make their corpus with (command:Debian package).
ENCODERS := oggenc:vorbis-tools opusenc:opus-tools lame:lame flac:flac sox:sox ffmpeg:ffmpeg

.PHONY: help venv encoders torchref python demo lint test test-fast golden lock bench clean-venv

help:
	@echo "make demo    - set up the environment, synthesize demo data, run the pipeline on it"
	@echo "make test    - set up the environment, run the linter and the test suite"
	@echo "make lint    - run ruff (configured in pyproject.toml)"
	@echo "make -s python - print the virtualenv's python (creating it if missing)"
	@echo "make lock    - re-resolve requirements.in into the requirements.txt lock"
	@echo "make golden  - regenerate the Kubeflow pipeline spec golden file after a pipeline change"

# Creates the venv once per lock hash (under a lock file so parallel makes do not race), then
# makes sure this checkout is the one installed in editable mode. All chatter goes to stderr so
# that `$$(make -s python)` yields only the path.
venv:
	@mkdir -p "$(VENV_ROOT)"
	@if [ ! -f "$(READY)" ]; then \
	  exec 9>"$(VENV_ROOT)/.create.lock"; flock 9; \
	  if [ ! -f "$(READY)" ]; then \
	    [ -n "$(PYTHON310)" ] || { echo "error: Python 3.10 not found; install it (e.g. 'pyenv install 3.10.13') or pass PYTHON310=/path/to/python3.10" >&2; exit 1; }; \
	    echo "creating $(VENV) with $(PYTHON310) (first run for this lock)" >&2; \
	    rm -rf "$(VENV)"; \
	    "$(PYTHON310)" -m venv "$(VENV)" >&2; \
	    "$(PY)" -m pip install -q --disable-pip-version-check "uv==$(UV_VERSION)" >&2; \
	    "$(UV)" pip sync --python "$(PY)" requirements.txt >&2; \
	    touch "$(READY)"; \
	  fi; \
	fi
	@# Byte-compile site-packages once: where PYTHONDONTWRITEBYTECODE is set, every process
	@# would otherwise recompile TensorFlow's sources on import (~15 s instead of ~5 s).
	@if [ ! -f "$(COMPILED)" ]; then \
	  exec 9>"$(VENV_ROOT)/.create.lock"; flock 9; \
	  if [ ! -f "$(COMPILED)" ]; then \
	    echo "byte-compiling $(VENV) (once)" >&2; \
	    "$(PY)" -m compileall -q -j 0 "$(VENV)/lib" >/dev/null 2>&1 || true; \
	    touch "$(COMPILED)"; \
	  fi; \
	fi
	@if ! (cd / && "$(PY)" -I -c 'import os, sys, jukebox_tf, serving; sys.exit(any(os.path.dirname(os.path.dirname(os.path.realpath(m.__file__))) != os.path.realpath(sys.argv[1]) for m in (jukebox_tf, serving)))' "$(CURDIR)") >/dev/null 2>&1; then \
	  echo "installing $(CURDIR) into $(VENV) (editable)" >&2; \
	  "$(UV)" pip install -q --python "$(PY)" --no-deps -e . >&2; \
	fi

# Installs the encoders that are missing (as root, or with passwordless sudo); the tests fail
# with the same message when they are still missing.
encoders:
	@missing=""; for e in $(ENCODERS); do command -v "$${e%%:*}" >/dev/null || \
	  missing="$$missing $${e##*:}"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing the audio encoders the tests use:$$missing" >&2; \
	  sudo=""; [ "$$(id -u)" = 0 ] || sudo="sudo -n"; \
	  { $$sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$sudo apt-get install \
	    -y -qq --no-install-recommends $$missing; } >&2 || { echo "error: could not install" \
	    "$$missing; install them (Debian: apt-get install$$missing) and run make test" \
	    "again" >&2; exit 1; }; \
	fi

# pip, not uv: the CPU torch wheel is found through pip's find-links on these machines.
torchref:
	@mkdir -p "$(VENV_ROOT)"
	@if [ ! -f "$(TORCHREF)/.ready" ]; then \
	  exec 9>"$(VENV_ROOT)/.create.lock"; flock 9; \
	  if [ ! -f "$(TORCHREF)/.ready" ]; then \
	    [ -n "$(PYTHON311)" ] || { echo "error: Python 3.11 not found (the PyTorch reference" \
	      "of the parity tests needs it); install it, e.g. 'pyenv install 3.11.7'" >&2; exit 1; }; \
	    echo "creating the PyTorch reference venv $(TORCHREF) (first run for its lock)" >&2; \
	    rm -rf "$(TORCHREF)"; "$(PYTHON311)" -m venv "$(TORCHREF)" >&2; \
	    "$(TORCHREF)/bin/python" -m pip install -q --disable-pip-version-check --no-deps \
	      -r $(TORCH_LOCK) >&2 || { echo "error: could not install $(TORCH_LOCK) (a CPU build" \
	      "of torch 2.13.0 for Python 3.11 is needed)" >&2; exit 1; }; \
	    touch "$(TORCHREF)/.ready"; \
	  fi; \
	fi

python: venv
	@echo "$(PY)"

# PYTHONPATH puts this checkout first even if another clone sharing the venv re-pointed the
# editable install meanwhile.
demo: venv
	PYTHONPATH="$(CURDIR)" "$(PY)" -m jukebox_tf demo --out "$(DEMO_DIR)"

# ruff, configured in pyproject.toml. It takes a second, so the test targets run it first and
# a finding stops them before the 30-minute suite.
lint: venv
	"$(VENV)/bin/ruff" check .

test: lint venv encoders torchref
	JUKEBOX_TORCH_PYTHON="$(TORCHREF)/bin/python" PYTHONPATH="$(CURDIR)" "$(PY)" -m pytest \
	  $(XDIST) $(PYTEST_ARGS)

# Everything but the tests marked slow: the quick loop while editing.
test-fast: lint venv encoders torchref
	JUKEBOX_TORCH_PYTHON="$(TORCHREF)/bin/python" PYTHONPATH="$(CURDIR)" "$(PY)" -m pytest \
	  -m "not slow" $(XDIST) $(PYTEST_ARGS)

# Rewrites tests/golden/kubeflow_pipeline.json from the current pipeline (review the diff).
golden: venv
	JUKEBOX_REGENERATE_GOLDEN=1 PYTHONPATH="$(CURDIR)" "$(PY)" -m pytest -q tests/test_pipeline_kubeflow.py

lock: venv
	"$(UV)" pip compile requirements.in --python-version 3.10 \
	  --python-platform x86_64-manylinux_2_28 --custom-compile-command "make lock" \
	  -o requirements.txt

bench: venv
	"$(PY)" benchmarks/ingest.py --json benchmarks/results/ingest.json
	PYTHONPATH="$(CURDIR)" "$(PY)" benchmarks/serving.py --json benchmarks/results/serving.json

clean-venv:
	rm -rf "$(VENV)"
