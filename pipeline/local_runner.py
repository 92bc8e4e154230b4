"""Runs the pipeline on this machine: LocalDagRunner, SQLite ML Metadata, Beam DirectRunner.

    python -m pipeline.local_runner --data DIR --root DIR [--preset tiny]

(`jukebox-tf pipeline run` is the same with more options.) Everything lands under the
pipeline root: `metadata.sqlite` (ML Metadata), one folder per component's outputs, and
`serving/<model name>/<version>/` (the Pusher's destination, a TF Serving model base path).
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import sys
import time
from typing import Sequence

from pipeline.configs import PIPELINE_NAME, PipelineConfig

METADATA_FILE = "metadata.sqlite"
DEFAULT_BEAM_ARGS = ("--direct_running_mode=in_memory", "--direct_num_workers=1")


def metadata_path(root: str) -> str:
    return os.path.join(root, METADATA_FILE)


def serving_dir(root: str, model_name: str) -> str:
    return os.path.join(root, "serving", model_name)


class _ComponentProgress(logging.Filter):
    """Turns LocalDagRunner's "Component X is running/finished." INFO records into one progress
    line each and drops the other INFO records (thousands of them), keeping warnings."""

    _PATTERN = re.compile(r"Component (\S+) is (running|finished)\.")

    def __init__(self, total: int):
        super().__init__()
        self.total, self.done, self.started = total, 0, {}

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno >= logging.WARNING:
            return True
        match = self._PATTERN.match(record.getMessage())
        if match:
            node, event = match.groups()
            if event == "running":
                self.started[node] = time.time()
                print(f"pipeline: [{self.done + 1}/{self.total}] {node} running", flush=True,
                      file=sys.stderr)
            else:
                self.done += 1
                seconds = time.time() - self.started.get(node, time.time())
                print(f"pipeline: [{self.done}/{self.total}] {node} finished ({seconds:.0f} s)",
                      flush=True, file=sys.stderr)
        return False


@contextlib.contextmanager
def component_progress(total: int):
    logger = logging.getLogger("absl")
    level, progress = logger.level, _ComponentProgress(total)
    logger.setLevel(logging.INFO)
    logger.addFilter(progress)
    try:
        yield progress
    finally:
        logger.removeFilter(progress)
        logger.setLevel(level)


def run(data_root: str, root: str, config: PipelineConfig, *,
        serving_model_dir: str | None = None, beam_pipeline_args: Sequence[str] = (),
        enable_cache: bool = True, pipeline_name: str = PIPELINE_NAME) -> str:
    """Runs the whole pipeline; returns the serving model base path it pushes to."""
    from tfx import v1 as tfx

    from pipeline.pipeline import create_pipeline

    root = os.path.abspath(root)
    serving_model_dir = os.path.abspath(serving_model_dir or serving_dir(root, config.model_name))
    os.makedirs(root, exist_ok=True)
    pipeline = create_pipeline(
        pipeline_root=root, data_root=os.path.abspath(data_root), config=config,
        serving_model_dir=serving_model_dir, pipeline_name=pipeline_name,
        metadata_connection_config=tfx.orchestration.metadata.sqlite_metadata_connection_config(
            metadata_path(root)),
        beam_pipeline_args=[*DEFAULT_BEAM_ARGS, *beam_pipeline_args],
        enable_cache=enable_cache)
    with component_progress(len(pipeline.components)):
        tfx.orchestration.LocalDagRunner().run(pipeline)
    return serving_model_dir


if __name__ == "__main__":
    import argparse

    from pipeline.configs import get_config

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True)
    parser.add_argument("--root", required=True)
    parser.add_argument("--preset", default="tiny")
    args = parser.parse_args()
    print(run(args.data, args.root, get_config(args.preset)))
