"""The stock Pusher with an executor that pushes a new integer version, atomically.

The stock executor names versions by Unix timestamp and copies files straight into
`<base>/<version>/` (saved_model.pb last), so a polling server can find a half-copied
variables/ folder. Here the model's `Format-Serving` folder is copied into a temporary
folder of the base directory whose name no server takes for a version (".tmp-<v>-XXXX"),
then renamed to `<base>/<v>` in one step, `v` one more than the largest existing version
(`jukebox_tf.export.versions.write_version`, as `jukebox-tf export` writes versions), so
`jukebox-tf serve` (serving/model_manager.py scan_versions) picks up complete versions only.

Everything else is the stock Pusher's: the blessing checks (model_blessing and infra_blessing
`blessed` == 1), the `pushed_model` artifact (a copy of the model, custom properties `pushed`
1/0, `pushed_destination`, `pushed_version`). `push_destination.filesystem.versioning` is
ignored (always integers). The base directory may be a URI (gs://...), which stock TF Serving
polls directly; there the rename moves the files one by one, saved_model.pb last
(`jukebox_tf.storage.rename`).
"""

from __future__ import annotations

import os
from typing import Any, Dict, List

from absl import logging
from tfx import types
from tfx.components import Pusher
from tfx.components.pusher import executor as pusher_executor
from tfx.dsl.components.base import executor_spec
from tfx.proto import pusher_pb2
from tfx.types import artifact_utils, standard_component_specs
from tfx.utils import io_utils, proto_utils

from jukebox_tf import storage
from jukebox_tf.export.versions import existing_versions, write_version


def _latest_version(base: str) -> tuple[int, str] | None:
    versions = existing_versions(base)
    return (versions[-1], os.path.join(base, str(versions[-1]))) if versions else None


def _same_bytes(a: str, b: str, block: int = 1 << 20) -> bool:
    with storage.open(a, "rb") as fa, storage.open(b, "rb") as fb:
        while True:
            chunk = fa.read(block)
            if chunk != fb.read(block):
                return False
            if not chunk:
                return True


def _same_files(a: str, b: str) -> bool:
    """Whether folders a and b hold the same files with the same bytes."""
    def listing(root):
        return sorted(os.path.relpath(os.path.join(d, f), root)
                      for d, _, files in storage.walk(root) for f in files)

    names = listing(a)
    return names == listing(b) and all(
        storage.getsize(os.path.join(a, n)) == storage.getsize(os.path.join(b, n))
        and _same_bytes(os.path.join(a, n), os.path.join(b, n)) for n in names)


class Executor(pusher_executor.Executor):
    """The stock pusher executor, pushing `<base>/<next integer version>` atomically."""

    def Do(self, input_dict: Dict[str, List[types.Artifact]],
           output_dict: Dict[str, List[types.Artifact]],
           exec_properties: Dict[str, Any]) -> None:
        self._log_startup(input_dict, output_dict, exec_properties)
        model_push = artifact_utils.get_single_instance(
            output_dict[standard_component_specs.PUSHED_MODEL_KEY])
        if not self.CheckBlessing(input_dict):
            self._MarkNotPushed(model_push)
            print("Pusher: the model is not blessed; nothing pushed", flush=True)
            return
        model_path = self.GetModelPath(input_dict)
        destination = pusher_pb2.PushDestination()
        proto_utils.json_to_proto(
            exec_properties[standard_component_specs.PUSH_DESTINATION_KEY], destination)
        if destination.WhichOneof("destination") != "filesystem":
            raise NotImplementedError(f"push_destination {destination.WhichOneof('destination')}"
                                      f": this Pusher pushes to a filesystem base_directory")
        base = destination.filesystem.base_directory
        if not base:
            raise ValueError("push_destination.filesystem.base_directory is empty")

        latest = _latest_version(base)
        if latest is not None and _same_files(model_path, latest[1]):
            # A rerun re-blesses the model it blessed before (it is its own baseline now):
            # serving it again under a new number would only make clients reload it.
            print(f"Pusher: {model_path} is already served as version {latest[0]}: "
                  f"{latest[1]}", flush=True)
            io_utils.copy_dir(model_path, model_push.uri)
            self._MarkPushed(model_push, pushed_destination=latest[1],
                             pushed_version=str(latest[0]))
            model_push.set_int_custom_property("already_pushed", 1)
            return

        def copy(tmp: str, version: int) -> None:
            storage.copytree(model_path, tmp)

        serving_path, version = write_version(base, copy)
        logging.info("Model written to serving path %s.", serving_path)
        print(f"Pusher: pushed {model_path} as version {version}: {serving_path}", flush=True)
        io_utils.copy_dir(model_path, model_push.uri)  # the stock pusher's archive copy
        self._MarkPushed(model_push, pushed_destination=serving_path,
                         pushed_version=str(version))


def make_pusher(model: types.BaseChannel, model_blessing: types.BaseChannel,
                infra_blessing: types.BaseChannel, base_directory: str) -> Pusher:
    """The stock Pusher with this module's executor, pushing to `base_directory` (the
    `--model_base_path` of the served model)."""
    return Pusher(
        model=model, model_blessing=model_blessing, infra_blessing=infra_blessing,
        push_destination=pusher_pb2.PushDestination(
            filesystem=pusher_pb2.PushDestination.Filesystem(base_directory=base_directory)),
        custom_executor_spec=executor_spec.ExecutorClassSpec(Executor))
