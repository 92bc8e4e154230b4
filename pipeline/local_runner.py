"""Runs the pipeline on this machine: LocalDagRunner, SQLite ML Metadata, Beam DirectRunner.

    python -m pipeline.local_runner --data DIR --root DIR [--preset tiny]

(`jukebox-tf pipeline run` is the same with more options.) Everything lands under the
pipeline root: `metadata.sqlite` (ML Metadata), one folder per component's outputs, and
`serving/<model name>/<version>/` (the Pusher's destination, a TF Serving model base path).
"""

from __future__ import annotations

import contextlib
import os
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


@contextlib.contextmanager
def component_progress(total: int):
    """Prints a line when each component starts and finishes (LocalDagRunner's own lines are
    absl INFO records, hidden by default and drowned in thousands of others when shown)."""
    from tfx.orchestration.portable import launcher

    original, done = launcher.Launcher.launch, [0]

    def launch(self, *args, **kwargs):
        node = self._pipeline_node.node_info.id
        print(f"pipeline: [{done[0] + 1}/{total}] {node} running", file=sys.stderr, flush=True)
        started = time.time()
        result = original(self, *args, **kwargs)
        done[0] += 1
        print(f"pipeline: [{done[0]}/{total}] {node} finished ({time.time() - started:.0f} s)",
              file=sys.stderr, flush=True)
        return result

    launcher.Launcher.launch = launch
    try:
        yield
    finally:
        launcher.Launcher.launch = original


def run(data_root: str, root: str, config: PipelineConfig, *,
        serving_model_dir: str | None = None, beam_pipeline_args: Sequence[str] = (),
        enable_cache: bool = True, pipeline_name: str = PIPELINE_NAME,
        metadata_file: str | None = None) -> str:
    """Runs the whole pipeline; returns the serving model base path it pushes to. The paths
    may be URIs (gs://...) but for `metadata_file`, the SQLite ML Metadata (default
    ROOT/metadata.sqlite), which must be local."""
    from tfx import v1 as tfx

    from jukebox_tf import storage
    from pipeline.pipeline import create_pipeline

    root = storage.abspath(root)
    if metadata_file is None and storage.is_remote(root):
        raise ValueError(f"pipeline root {root} is not local: give a local metadata_file for "
                         f"the SQLite ML Metadata")
    serving_model_dir = storage.abspath(serving_model_dir
                                        or serving_dir(root, config.model_name))
    storage.makedirs(root)
    pipeline = create_pipeline(
        pipeline_root=root, data_root=storage.abspath(data_root), config=config,
        serving_model_dir=serving_model_dir, pipeline_name=pipeline_name,
        metadata_connection_config=tfx.orchestration.metadata.sqlite_metadata_connection_config(
            metadata_file or metadata_path(root)),
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
