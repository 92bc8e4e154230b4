"""LocalInfraValidator: does the exported SavedModel load and answer in the model server?

The stock InfraValidator starts TF Serving in Docker or on Kubernetes. This component does
the same check with the repository's TF-Serving-compatible server (`serving/`) in-process:
the model's `Format-Serving` folder is served as version 1 of a model (a link in a local
temporary base path, or a copy there when the model is remote, a model config from
`serving.toy_model.write_model_config`, free ports from portpicker), the component waits until
the version is AVAILABLE (or has failed to load), replays the SavedModel's warmup requests
(`assets.extra/tf_serving_warmup_requests`, PredictionLog records) through the stock TF Serving
gRPC API (`serving.client`) and checks every response (outputs present, floating-point outputs
finite).

Output `blessing` (InfraBlessing) exactly as the stock InfraValidator writes it, which the
stock Pusher reads: an `INFRA_BLESSED` or `INFRA_NOT_BLESSED` file and the integer custom
property `blessed` 1/0; plus `infra_validation.json` with what was checked and why it failed.
A model that does not load or answer is not blessed; the pipeline goes on.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from typing import Any, Dict, List

import numpy as np
from absl import logging
from tfx import types
from tfx.dsl.components.base import base_component, base_executor, executor_spec
from tfx.types import artifact_utils, standard_artifacts
from tfx.types.component_spec import ChannelParameter, ExecutionParameter
from tfx.utils import io_utils, path_utils

from jukebox_tf import storage

# The stock InfraValidator's names (tfx/components/infra_validator/executor.py).
BLESSED_KEY = "blessed"
BLESSED_FILE = "INFRA_BLESSED"
NOT_BLESSED_FILE = "INFRA_NOT_BLESSED"
REPORT_FILE = "infra_validation.json"
MODEL_NAME = "jukebox"
VERSION = 1


def _check_response(signature: str, outputs: dict) -> str:
    """'' when a response looks right, else what is wrong with it."""
    if not outputs:
        return f"{signature}: the response has no outputs"
    for name, value in outputs.items():
        value = np.asarray(value)
        if value.dtype.kind in "fc" and not np.all(np.isfinite(value)):
            return f"{signature}: output {name!r} holds NaN or Inf"
    return ""


def validate_model(model_dir: str, model_name: str = MODEL_NAME, load_timeout: float = 600.0,
                   request_timeout: float = 600.0, work_dir: str | None = None) -> dict:
    """Serves `model_dir` (one SavedModel version) and replays its warmup requests.

    A remote `model_dir` (gs://..., as on Kubeflow) is copied into the local temporary base
    path (in `work_dir` when that is local, else the system's) rather than linked there, as
    the stock InfraValidator copies a model into a TF Serving layout: a link cannot point at
    a remote folder, and a server in another process could not read a process-local one
    (ram://).

    Returns {"blessed": bool, "reason": str ('' when blessed), "requests": [{"signature",
    "seconds", "outputs", "error"}], "load_seconds"}; never raises for a broken model.
    """
    import portpicker
    import tensorflow as tf

    from jukebox_tf.export.warmup import WARMUP_FILE, read_warmup
    from serving import client
    from serving.options import ServerOptions
    from serving.server import ModelServer
    from serving.toy_model import write_model_config

    report = {"model_dir": model_dir, "blessed": False, "reason": "", "requests": [],
              "load_seconds": None}
    local_work_dir = work_dir if work_dir and not storage.is_remote(work_dir) else None
    tmp = tempfile.mkdtemp(prefix="infra-validation-", dir=local_work_dir)
    try:
        if not storage.isdir(model_dir):
            raise RuntimeError(f"{model_dir} is not a folder: the model artifact holds no "
                               f"SavedModel")
        base = os.path.join(tmp, "models")
        os.makedirs(base)
        version_dir = os.path.join(base, str(VERSION))
        if storage.is_remote(model_dir):
            storage.copytree(model_dir, version_dir)
        else:
            os.symlink(os.path.abspath(model_dir), version_dir)
        config = write_model_config(os.path.join(tmp, "models.config"), model_name, base)
        options = ServerOptions(port=portpicker.pick_unused_port(), rest_port=0,
                                poll_seconds=1.0, grace_seconds=2.0)
        started = time.monotonic()
        with ModelServer(config, options) as server, client.connect(server.target) as channel:
            # The server's first load blocks in start(): a version that failed is END now,
            # and one the server did not take for a SavedModel is not there at all.
            try:
                states = client.status(channel, model_name, VERSION, timeout=60)
            except client.ServingError as e:
                raise RuntimeError(f"the server did not take {model_dir} for a complete "
                                   f"SavedModel version ({e})") from None
            failed = [s for s in states if s["state"] == "END" and s["error_code"] != "OK"]
            if failed:
                raise RuntimeError(f"the model failed to load: {failed[0]['error_message']}")
            client.wait_until_available(channel, model_name, VERSION, timeout=load_timeout)
            report["load_seconds"] = round(time.monotonic() - started, 2)
            warmup = os.path.join(version_dir, WARMUP_FILE)
            requests = read_warmup(warmup) if os.path.isfile(warmup) else []
            if not requests:
                logging.warning("%s: no warmup requests; only loading was checked", model_dir)
            for request in requests:
                signature = request.model_spec.signature_name or "serving_default"
                inputs = {name: tf.make_ndarray(proto) for name, proto in request.inputs.items()}
                entry = {"signature": signature, "seconds": None, "outputs": [], "error": ""}
                report["requests"].append(entry)
                t0 = time.monotonic()
                try:
                    outputs = client.predict(channel, model_name, inputs, signature,
                                             version=VERSION, timeout=request_timeout)
                except client.ServingError as e:
                    entry["error"] = f"{signature}: {e}"
                else:
                    entry["outputs"] = sorted(outputs)
                    entry["error"] = _check_response(signature, outputs)
                entry["seconds"] = round(time.monotonic() - t0, 3)
            errors = [r["error"] for r in report["requests"] if r["error"]]
            if errors:
                raise RuntimeError("; ".join(errors))
        report["blessed"] = True
    except Exception as e:  # noqa: BLE001 - any failure means "not servable", not a crash
        report["reason"] = str(e) or type(e).__name__
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return report


class Executor(base_executor.BaseExecutor):
    """Validates `model`'s Format-Serving in the local server; writes the InfraBlessing."""

    def Do(self, input_dict: Dict[str, List[types.Artifact]],
           output_dict: Dict[str, List[types.Artifact]],
           exec_properties: Dict[str, Any]) -> None:
        self._log_startup(input_dict, output_dict, exec_properties)
        model = artifact_utils.get_single_instance(input_dict["model"])
        blessing = artifact_utils.get_single_instance(output_dict["blessing"])
        model_dir = path_utils.serving_model_path(model.uri,
                                                  path_utils.is_old_model_artifact(model))
        report = validate_model(
            model_dir, exec_properties.get("model_name") or MODEL_NAME,
            float(exec_properties.get("load_timeout_seconds") or 600.0),
            float(exec_properties.get("request_timeout_seconds") or 600.0),
            self._get_tmp_dir() if self._context else None)
        io_utils.write_string_file(os.path.join(blessing.uri, REPORT_FILE),
                                   json.dumps(report, indent=2))
        if report["blessed"]:
            print(f"LocalInfraValidator: {model_dir} loaded in {report['load_seconds']} s and "
                  f"answered {len(report['requests'])} warmup request(s): INFRA_BLESSED",
                  flush=True)
        else:
            print(f"LocalInfraValidator: {model_dir}: INFRA_NOT_BLESSED ({report['reason']})",
                  flush=True)
        io_utils.write_string_file(
            os.path.join(blessing.uri, BLESSED_FILE if report["blessed"] else NOT_BLESSED_FILE),
            "")
        blessing.set_int_custom_property(BLESSED_KEY, 1 if report["blessed"] else 0)


class LocalInfraValidatorSpec(types.ComponentSpec):
    PARAMETERS = {
        "model_name": ExecutionParameter(type=str),
        "load_timeout_seconds": ExecutionParameter(type=float),
        "request_timeout_seconds": ExecutionParameter(type=float),
    }
    INPUTS = {"model": ChannelParameter(type=standard_artifacts.Model)}
    OUTPUTS = {"blessing": ChannelParameter(type=standard_artifacts.InfraBlessing)}


class LocalInfraValidator(base_component.BaseComponent):
    """Loads the exported model in the local TF-Serving-compatible server and replays its
    warmup requests; outputs `blessing` (InfraBlessing). See the module docstring."""

    SPEC_CLASS = LocalInfraValidatorSpec
    EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(Executor)

    def __init__(self, model: types.BaseChannel, model_name: str = MODEL_NAME,
                 load_timeout_seconds: float = 600.0, request_timeout_seconds: float = 600.0):
        super().__init__(spec=LocalInfraValidatorSpec(
            model=model, model_name=model_name,
            load_timeout_seconds=float(load_timeout_seconds),
            request_timeout_seconds=float(request_timeout_seconds),
            blessing=types.Channel(type=standard_artifacts.InfraBlessing)))
