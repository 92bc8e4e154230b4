"""The Jukebox TFX pipeline: a folder of audio -> a blessed SavedModel pushed to TF Serving.

    AudioExampleGen -> StatisticsGen -> SchemaGen
        \\-> Trainer (VQ-VAE) -> CodeGen -> Trainer (top prior, level 2)
                                         -> Trainer (upsampler, level 1)
                                         -> Trainer (upsampler, level 0)
             -> ModelExport (one SavedModel of all four)
             -> JukeboxEvaluator (vs. the latest blessed model, found by a Resolver)
             -> LocalInfraValidator (loads it in the TF-Serving-compatible server)
             -> Pusher (a new integer version under the serving base path)

Runs given in the config (vqvae_from, upsamplers_from, top_prior_from) enter through Importer
nodes instead: a given VQ-VAE or upsampler is not trained; a given top prior is the Trainer's
base_model, fine-tuned on the codes, and the Evaluator blesses the result only when it beats
that starting prior on the eval split.

`create_pipeline` is runner-neutral: `local_runner.py` runs it with LocalDagRunner (SQLite ML
Metadata under the pipeline root), `kubeflow_v2_runner.py` compiles it for Kubeflow Pipelines.
"""

from __future__ import annotations

from typing import Sequence

from tfx import v1 as tfx

from jukebox_tf.errors import JukeboxError
from pipeline.configs import PIPELINE_NAME, PipelineConfig


def create_components(data_root: str, config: PipelineConfig, serving_model_dir: str,
                      check_runs: bool = True) -> list:
    """The pipeline's components, in a valid run order. check_runs: read and check the
    imported runs now (imported_runs.py; off when compiling for a cluster that reads them)."""
    from jukebox_tf.audio.ingest import IngestConfig
    from pipeline.components.audio_example_gen import AudioExampleGen
    from pipeline.components.code_gen import CodeGen
    from pipeline.components.evaluator import JukeboxEvaluator
    from pipeline.components.infra_validator import LocalInfraValidator
    from pipeline.components.model_export import ModelExport
    from pipeline.components.pusher import make_pusher
    from pipeline.components.schema_gen import AudioSchemaGen
    from pipeline.imported_runs import importer, imported_runs

    example_gen = AudioExampleGen(
        input_base=data_root, eval_ratio=config.eval_ratio,
        ingest_config=IngestConfig(sample_rate=config.sample_rate,
                                   chunk_seconds=config.chunk_seconds,
                                   strict=config.strict_ingest))
    examples = example_gen.outputs["examples"]
    statistics_gen = tfx.components.StatisticsGen(examples=examples)
    schema_gen = AudioSchemaGen(statistics=statistics_gen.outputs["statistics"],
                                infer_feature_shape=False).with_id("SchemaGen")

    top = config.top_level
    imported = imported_runs(config.vqvae_from, config.upsamplers_from,
                             config.top_prior_from, top, check_runs)
    if imported.sample_rate is not None and imported.sample_rate != config.sample_rate:
        raise JukeboxError(f"--vqvae-from {imported.vqvae}: the VQ-VAE works at "
                           f"{imported.sample_rate} Hz, the pipeline ingests at "
                           f"{config.sample_rate} Hz (sample_rate)")
    if imported.vqvae:
        vqvae_node = importer(imported.vqvae, "VQVAEImporter")
        vqvae_model = vqvae_node.outputs["result"]
    else:
        vqvae_node = tfx.components.Trainer(
            run_fn="pipeline.components.trainer_fns.vqvae_run_fn",
            examples=examples,
            schema=schema_gen.outputs["schema"],
            train_args=tfx.proto.TrainArgs(num_steps=config.vqvae_steps),
            eval_args=tfx.proto.EvalArgs(num_steps=0),
            custom_config=config.vqvae_custom_config()).with_id("VQVAETrainer")
        vqvae_model = vqvae_node.outputs["model"]
    code_gen = CodeGen(examples=examples, model=vqvae_model, batch_size=config.code_batch_size)

    prior_nodes, start_prior = {}, None
    for level in reversed(range(top + 1)):
        if level in imported.upsamplers:
            prior_nodes[level] = importer(imported.upsamplers[level],
                                          f"UpsamplerImporterL{level}")
            continue
        base_model = None
        if level == top and imported.top_prior:
            start_prior = importer(imported.top_prior, "TopPriorImporter")
            base_model = start_prior.outputs["result"]
        name = "TopPriorTrainer" if level == top else f"UpsamplerTrainerL{level}"
        prior_nodes[level] = tfx.components.Trainer(
            run_fn="pipeline.components.trainer_fns.prior_run_fn",
            examples=code_gen.outputs["codes"],
            base_model=base_model,
            train_args=tfx.proto.TrainArgs(num_steps=config.prior_steps_of(level)),
            eval_args=tfx.proto.EvalArgs(num_steps=0),
            custom_config=config.prior_custom_config(level)).with_id(name)
    prior_models = {level: node.outputs["result" if level in imported.upsamplers else "model"]
                    for level, node in prior_nodes.items()}

    # ModelExport's inputs name three levels, as every preset's VQ-VAE has.
    model_export = ModelExport(
        vqvae=vqvae_model,
        top_prior=prior_models[top],
        upsampler_l1=prior_models[1],
        upsampler_l0=prior_models[0],
        model_name=config.model_name)
    model = model_export.outputs["model"]

    baseline_resolver = tfx.dsl.Resolver(
        strategy_class=tfx.dsl.experimental.LatestBlessedModelStrategy,
        model=tfx.dsl.Channel(type=tfx.types.standard_artifacts.Model),
        model_blessing=tfx.dsl.Channel(type=tfx.types.standard_artifacts.ModelBlessing),
    ).with_id("LatestBlessedModelResolver")
    evaluator = JukeboxEvaluator(examples=examples, model=model,
                                 baseline_model=baseline_resolver.outputs["model"],
                                 start_prior=start_prior and start_prior.outputs["result"],
                                 max_eval_chunks=config.max_eval_chunks)
    infra_validator = LocalInfraValidator(model=model, model_name=config.model_name)
    pusher = make_pusher(model=model, model_blessing=evaluator.outputs["blessing"],
                         infra_blessing=infra_validator.outputs["blessing"],
                         base_directory=serving_model_dir)
    return [example_gen, statistics_gen, schema_gen, vqvae_node, code_gen,
            *([start_prior] if start_prior else []), *prior_nodes.values(), model_export,
            baseline_resolver, evaluator, infra_validator, pusher]


def create_pipeline(pipeline_root: str, data_root: str, config: PipelineConfig,
                    serving_model_dir: str, *, pipeline_name: str = PIPELINE_NAME,
                    metadata_connection_config=None, beam_pipeline_args: Sequence[str] = (),
                    enable_cache: bool = True, check_runs: bool = True) -> tfx.dsl.Pipeline:
    """The whole pipeline (see the module docstring). `beam_pipeline_args` reach every Beam
    component (ExampleGen, StatisticsGen, CodeGen, ...), e.g. --direct_num_workers=2 or
    --runner=FlinkRunner."""
    return tfx.dsl.Pipeline(
        pipeline_name=pipeline_name,
        pipeline_root=pipeline_root,
        components=create_components(data_root, config, serving_model_dir, check_runs),
        enable_cache=enable_cache,
        metadata_connection_config=metadata_connection_config,
        beam_pipeline_args=list(beam_pipeline_args))
