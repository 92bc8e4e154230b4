# The image every step of the Kubeflow pipeline runs in (BUILD.md, "Kubeflow Pipelines"):
# Python 3.10, the locked requirements, and this repo installed, so that the command the
# compiled spec gives each step,
#   python -m tfx.orchestration.kubeflow.v2.container.kubeflow_v2_run_executor ...,
# imports `pipeline.*`, `jukebox_tf.*` and `serving.*`. The spec sets the command, so the
# image needs no ENTRYPOINT.
#
#   docker build -t REGISTRY/jukebox-tf:TAG .

# --- build: the virtualenv, exactly the lock (as `make venv` makes it) ---
FROM python:3.10-slim-bookworm AS build

# crcmod and pyfarmhash (Beam's) ship no wheels for Python 3.10: they compile from source.
RUN apt-get update \
    && apt-get install -y --no-install-recommends build-essential \
    && rm -rf /var/lib/apt/lists/*

# The Makefile's UV_VERSION.
ARG UV_VERSION=0.13.9
RUN python -m venv /opt/venv \
    && /opt/venv/bin/pip install --no-cache-dir --disable-pip-version-check "uv==${UV_VERSION}"

# Only the lock: editing the code does not redo this (slow) layer.
COPY requirements.txt /tmp/requirements.txt
RUN /opt/venv/bin/uv pip sync --no-cache --python /opt/venv/bin/python /tmp/requirements.txt

# --- runtime: no compilers ---
FROM python:3.10-slim-bookworm

COPY --from=build /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    TF_CPP_MIN_LOG_LEVEL=2

WORKDIR /app
COPY . /app
# Editable, as `make venv` installs it: the code stays in /app with its data files
# (serving/*.config). setuptools comes from the lock, so no build isolation is needed.
RUN uv pip install --no-cache --python /opt/venv/bin/python --no-deps --no-build-isolation -e . \
    && python -c "import jukebox_tf, serving, pipeline.components.trainer_fns, tfx.orchestration.kubeflow.v2.container.kubeflow_v2_run_executor"
