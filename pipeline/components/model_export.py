"""ModelExport: the four trained runs -> one servable SavedModel (a standard Model artifact).

    <uri>/Format-Serving/   one SavedModel version as `jukebox-tf export` writes it (signatures
                            encode/decode/sample/upsample[_part]/generate/metadata, assets,
                            assets.extra/ with serving limits and warmup requests): what the
                            Pusher copies to the serving base path as a new version
    <uri>/runs/vqvae/, runs/level2/, runs/level1/, runs/level0/
                            the training runs it was exported from (config + checkpoints), so
                            the Evaluator can score this model again later, as the baseline

The export itself is the library's (`plan_hierarchy`, `load_weights`, `export_models`); the
URIs may be remote (gs://...), as all of it goes through `jukebox_tf.storage` and TensorFlow.
"""

from __future__ import annotations

import os

from tfx import types
from tfx.dsl.components.base import base_component, base_executor, executor_spec
from tfx.types import artifact_utils, component_spec, standard_artifacts
from tfx.utils import path_utils

RUNS_DIR = "runs"
LEVELS = 3  # the product's hierarchy: top prior (level 2) and upsamplers 1 and 0
_PRIOR_INPUTS = {"top_prior": 2, "upsampler_l1": 1, "upsampler_l0": 0}


def run_dirs(model_uri: str) -> dict[str, str]:
    """{"vqvae": dir, "level2": dir, "level1": dir, "level0": dir} of a ModelExport model."""
    names = ["vqvae"] + [f"level{level}" for level in reversed(range(LEVELS))]
    return {name: os.path.join(model_uri, RUNS_DIR, name) for name in names}


class Executor(base_executor.BaseExecutor):

    def Do(self, input_dict, output_dict, exec_properties):
        from jukebox_tf import storage
        from jukebox_tf.export import ExportLimits, export_models
        from jukebox_tf.sampling.runs import load_weights, plan_hierarchy
        from pipeline.imported_runs import run_dir_of

        self._log_startup(input_dict, output_dict, exec_properties)
        model = artifact_utils.get_single_instance(output_dict["model"])
        runs = run_dirs(model.uri)
        sources = {"vqvae": input_dict["vqvae"]} | {
            f"level{level}": input_dict[key] for key, level in _PRIOR_INPUTS.items()}
        for name, artifacts in sources.items():
            storage.copytree(run_dir_of(artifact_utils.get_single_instance(artifacts).uri),
                             runs[name])
        plan = plan_hierarchy(runs["vqvae"], runs["level2"], [runs["level1"], runs["level0"]])
        hierarchy = load_weights(plan, use_ema=True)
        limits = ExportLimits(max_generate_seconds=float(exec_properties["max_generate_seconds"]))
        serving_dir = path_utils.serving_model_dir(model.uri)
        with storage.temporary_directory("jukebox-export-", model.uri) as base:
            result = export_models(hierarchy.vqvae, hierarchy.priors, base, 1,
                                   vocab=hierarchy.vocab,
                                   level_vocabs=hierarchy.level_vocabs, limits=limits,
                                   model_name=exec_properties["model_name"])
            storage.rename(result.path, serving_dir)
        model.set_string_custom_property("signatures", ",".join(result.signatures))
        model.set_int_custom_property("size_bytes", result.size_bytes)


class ModelExportSpec(types.ComponentSpec):
    PARAMETERS = {
        "model_name": component_spec.ExecutionParameter(type=str),
        "max_generate_seconds": component_spec.ExecutionParameter(type=float),
    }
    INPUTS = {"vqvae": component_spec.ChannelParameter(type=standard_artifacts.Model)} | {
        key: component_spec.ChannelParameter(type=standard_artifacts.Model)
        for key in _PRIOR_INPUTS}
    OUTPUTS = {"model": component_spec.ChannelParameter(type=standard_artifacts.Model)}


class ModelExport(base_component.BaseComponent):
    """Bundles the VQ-VAE and the three priors' Trainer outputs into one servable model."""

    SPEC_CLASS = ModelExportSpec
    EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(Executor)

    def __init__(self, vqvae: types.BaseChannel, top_prior: types.BaseChannel,
                 upsampler_l1: types.BaseChannel, upsampler_l0: types.BaseChannel,
                 model_name: str = "jukebox", max_generate_seconds: float = 20.0):
        super().__init__(spec=ModelExportSpec(
            vqvae=vqvae, top_prior=top_prior, upsampler_l1=upsampler_l1,
            upsampler_l0=upsampler_l0, model_name=model_name,
            max_generate_seconds=max_generate_seconds,
            model=types.Channel(type=standard_artifacts.Model)))
