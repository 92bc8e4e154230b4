"""The Kubeflow Pipelines v2 spec (pipeline/kubeflow_v2_runner.py) against a golden file.

The pipeline is compiled once with fixed arguments (GOLDEN_ARGS) and compared, whole, with
tests/golden/kubeflow_pipeline.json (and with released runs imported for fine-tuning, with
kubeflow_pipeline_finetune.json); the other tests read the same spec through kfp's protos
(every component a task, running the image with its executor class, run_fn and Beam args).

After an intended change to the pipeline or its components, regenerate the golden file with

    make golden

which is `JUKEBOX_REGENERATE_GOLDEN=1 PYTHONPATH=. python -m pytest tests/test_pipeline_kubeflow.py`
(the test writes the file, then checks it like any other run); review and commit the diff.
"""

import copy
import difflib
import importlib
import json
import os

import pytest
import yaml

from pipeline.configs import get_config

GOLDEN = os.path.join(os.path.dirname(__file__), "golden", "kubeflow_pipeline.json")
FINETUNE_GOLDEN = os.path.join(os.path.dirname(__file__), "golden",
                               "kubeflow_pipeline_finetune.json")
REGENERATE_ENV = "JUKEBOX_REGENERATE_GOLDEN"
REGENERATE_CMD = (f"make golden  (or: {REGENERATE_ENV}=1 PYTHONPATH=. python -m pytest "
                  f"tests/test_pipeline_kubeflow.py)")

IMAGE = "jukebox-tf:golden"
BEAM_ARGS = ("--direct_running_mode=multi_processing", "--direct_num_workers=2")
GOLDEN_ARGS = dict(image=IMAGE, pipeline_root="gs://jukebox-golden/pipeline",
                   data_root="gs://jukebox-golden/audio",
                   serving_model_dir="gs://jukebox-golden/serving/jukebox",
                   config=get_config("tiny"), beam_pipeline_args=BEAM_ARGS)
RUN_EXECUTOR = ["python", "-m", "tfx.orchestration.kubeflow.v2.container.kubeflow_v2_run_executor"]

TRAINER = "tfx.components.trainer.executor.GenericExecutor"
# task id -> the executor class its container runs (and the Trainers' run_fn)
EXECUTORS = {
    "AudioExampleGen": "pipeline.components.audio_example_gen.Executor",
    "StatisticsGen": "tfx.components.statistics_gen.executor.Executor",
    "SchemaGen": "pipeline.components.schema_gen.Executor",
    "VQVAETrainer": TRAINER,
    "CodeGen": "pipeline.components.code_gen.Executor",
    "TopPriorTrainer": TRAINER,
    "UpsamplerTrainerL1": TRAINER,
    "UpsamplerTrainerL0": TRAINER,
    "ModelExport": "pipeline.components.model_export.Executor",
    "JukeboxEvaluator": "pipeline.components.evaluator.Executor",
    "LocalInfraValidator": "pipeline.components.infra_validator.Executor",
    "Pusher": "pipeline.components.pusher.Executor",
}
RUN_FNS = {"VQVAETrainer": "pipeline.components.trainer_fns.vqvae_run_fn",
           **{name: "pipeline.components.trainer_fns.prior_run_fn"
              for name in ("TopPriorTrainer", "UpsamplerTrainerL1", "UpsamplerTrainerL0")}}
# A Resolver compiles to one query task per input channel, run by Kubeflow itself.
RESOLVER_TASKS = ("LatestBlessedModelResolver-model-resolver",
                  "LatestBlessedModelResolver-model-blessing-resolver")


def normalise(job: dict) -> dict:
    """The compiler's version stamps blanked: `pipelineSpec.sdkVersion` ("tfx-1.16.0") and
    the `tfx_version` / `tfx_py_version` labels change with the TFX and Python in the lock,
    not with the pipeline. Everything else (nothing in the spec depends on time, paths of
    this checkout or hash seeds) is compared as compiled."""
    job = copy.deepcopy(job)
    assert job["pipelineSpec"]["sdkVersion"].startswith("tfx-"), job["pipelineSpec"]["sdkVersion"]
    job["pipelineSpec"]["sdkVersion"] = "tfx-VERSION"
    for label in ("tfx_version", "tfx_py_version"):
        assert label in job["labels"], job["labels"]
        job["labels"][label] = "VERSION"
    return job


def _dump(job: dict) -> str:
    return json.dumps(job, indent=2, sort_keys=True) + "\n"


def _constant(spec, task: str, parameter: str):
    """A task's constant string parameter (None if the task has no such parameter)."""
    parameters = spec.root.dag.tasks[task].inputs.parameters
    if parameter not in parameters:
        return None
    return parameters[parameter].runtime_value.constant_value.string_value


@pytest.fixture(scope="module")
def compiled(tmp_path_factory):
    """(the returned PipelineJob dict, the path of the written .json)."""
    from pipeline.kubeflow_v2_runner import compile_pipeline

    path = str(tmp_path_factory.mktemp("kubeflow") / "pipeline.json")
    return compile_pipeline(path, **GOLDEN_ARGS), path


@pytest.fixture(scope="module")
def protos(compiled):
    """The spec read by kfp's protos: (PipelineJob, PipelineSpec, PipelineDeploymentConfig).
    `ParseDict` rejects any field the protos do not define."""
    from google.protobuf import json_format
    from kfp.pipeline_spec import pipeline_spec_pb2

    job, _ = compiled
    job_pb = json_format.ParseDict(job, pipeline_spec_pb2.PipelineJob())
    spec = json_format.ParseDict(job["pipelineSpec"], pipeline_spec_pb2.PipelineSpec())
    # PipelineSpec holds deploymentSpec as a free-form Struct; this is its real type.
    deployment = json_format.ParseDict(job["pipelineSpec"]["deploymentSpec"],
                                       pipeline_spec_pb2.PipelineDeploymentConfig())
    return job_pb, spec, deployment


def assert_matches_golden(job: dict, golden_path: str):
    if os.environ.get(REGENERATE_ENV) == "1":
        from jukebox_tf.audio.records import AtomicWriter

        with AtomicWriter(golden_path, "w") as f:
            f.write(_dump(normalise(job)))
    assert os.path.exists(golden_path), (f"{golden_path} is missing; create it with: "
                                         f"{REGENERATE_CMD}")
    with open(golden_path) as f:
        golden = f.read()
    actual = _dump(normalise(job))
    if actual != golden:
        diff = list(difflib.unified_diff(golden.splitlines(), actual.splitlines(),
                                         "golden", "compiled", lineterm="", n=2))
        shown = "\n".join(diff[:60]) + ("\n..." if len(diff) > 60 else "")
        pytest.fail(f"the compiled Kubeflow spec differs from {golden_path}; if the change "
                    f"is intended, regenerate it with: {REGENERATE_CMD}\n{shown}",
                    pytrace=False)


def test_compiled_spec_matches_golden_file(compiled):
    job, path = compiled
    with open(path) as f:
        assert json.load(f) == job, "the written file differs from the returned spec"
    assert_matches_golden(job, GOLDEN)


def test_fine_tune_spec_imports_the_released_runs(tmp_path):
    """--vqvae-from, --upsamplers-from and --top-prior-from compile to Importer tasks of the
    given URIs (read in the cluster, not here): no VQ-VAE or upsampler Trainer; the top
    prior's Trainer gets the imported prior as base_model, the Evaluator as start_prior."""
    from pipeline.kubeflow_v2_runner import compile_pipeline

    released = "gs://jukebox-golden/released"
    config = get_config("tiny", sample_rate=44100, vqvae_from=f"{released}/vqvae",
                        upsamplers_from=(f"{released}/upsampler_1", f"{released}/upsampler_0"),
                        top_prior_from=f"{released}/prior_5b")
    job = compile_pipeline(str(tmp_path / "finetune.json"), **dict(GOLDEN_ARGS, config=config))
    assert_matches_golden(job, FINETUNE_GOLDEN)
    tasks = job["pipelineSpec"]["root"]["dag"]["tasks"]
    executors = job["pipelineSpec"]["deploymentSpec"]["executors"]
    imports = {"VQVAEImporter": "vqvae", "UpsamplerImporterL1": "upsampler_1",
               "UpsamplerImporterL0": "upsampler_0", "TopPriorImporter": "prior_5b"}
    for task, run in imports.items():
        uri = executors[f"{task}_executor"]["importer"]["artifactUri"]["constantValue"]
        assert uri["stringValue"] == f"{released}/{run}"
    assert not {"VQVAETrainer", "UpsamplerTrainerL1", "UpsamplerTrainerL0"} & set(tasks)
    trainer = tasks["TopPriorTrainer"]["inputs"]["artifacts"]["base_model"]
    evaluator = tasks["JukeboxEvaluator"]["inputs"]["artifacts"]["start_prior"]
    for consumer in (trainer, evaluator):
        assert consumer["taskOutputArtifact"]["producerTask"] == "TopPriorImporter"
    code_gen = tasks["CodeGen"]["inputs"]["artifacts"]["model"]["taskOutputArtifact"]
    assert code_gen["producerTask"] == "VQVAEImporter"


def test_every_component_is_a_task_of_the_image_with_its_executor(protos):
    job_pb, spec, deployment = protos
    tasks = spec.root.dag.tasks
    assert sorted(tasks) == sorted([*EXECUTORS, *RESOLVER_TASKS])
    assert spec.pipeline_info.name == "jukebox-tf"
    assert job_pb.runtime_config.gcs_output_directory == GOLDEN_ARGS["pipeline_root"]
    for name, executor_class in EXECUTORS.items():
        executor_label = spec.components[tasks[name].component_ref.name].executor_label
        container = deployment.executors[executor_label].container
        assert container.image == IMAGE, name
        assert list(container.command) == RUN_EXECUTOR, name
        args = list(container.args)
        assert args[:4] == ["--executor_class_path", executor_class,
                            "--json_serialized_invocation_args", "{{$}}"], (name, args)
        assert tuple(args[-len(BEAM_ARGS):]) == BEAM_ARGS, (name, args)
        module, cls = executor_class.rsplit(".", 1)  # the image must be able to import it
        assert hasattr(importlib.import_module(module), cls), executor_class
        run_fn = _constant(spec, name, "run_fn")
        assert run_fn == RUN_FNS.get(name), name
        if run_fn:
            module, fn = run_fn.rsplit(".", 1)
            assert callable(getattr(importlib.import_module(module), fn)), run_fn
    # The ExampleGen's driver (span and input fingerprint, for the cache) runs in the image too.
    hook = deployment.executors[spec.components["AudioExampleGen"].executor_label] \
        .container.lifecycle.pre_cache_check
    assert tuple(hook.args[-len(BEAM_ARGS):]) == BEAM_ARGS
    for name in RESOLVER_TASKS:
        executor = deployment.executors[spec.components[name].executor_label]
        assert executor.WhichOneof("spec") == "resolver", name


def test_spec_wires_roots_and_the_dag(protos):
    _, spec, _ = protos
    tasks = spec.root.dag.tasks

    def producer(task, artifact):
        return tasks[task].inputs.artifacts[artifact].task_output_artifact.producer_task

    assert _constant(spec, "AudioExampleGen", "input_base") == GOLDEN_ARGS["data_root"]
    push_destination = json.loads(_constant(spec, "Pusher", "push_destination"))
    assert push_destination == {"filesystem": {
        "base_directory": GOLDEN_ARGS["serving_model_dir"]}}
    assert json.loads(_constant(spec, "VQVAETrainer", "train_args")) == {
        "num_steps": GOLDEN_ARGS["config"].vqvae_steps}
    assert producer("CodeGen", "model") == "VQVAETrainer"
    assert {producer("ModelExport", key) for key in
            ("vqvae", "top_prior", "upsampler_l1", "upsampler_l0")} == {
        "VQVAETrainer", "TopPriorTrainer", "UpsamplerTrainerL1", "UpsamplerTrainerL0"}
    assert producer("JukeboxEvaluator", "baseline_model") == RESOLVER_TASKS[0]
    assert producer("Pusher", "model_blessing") == "JukeboxEvaluator"
    assert producer("Pusher", "infra_blessing") == "LocalInfraValidator"
    assert all(tasks[name].caching_options.enable_cache for name in EXECUTORS)


def test_cli_writes_a_kfp_client_yaml_with_default_dirs(tmp_path, capsys):
    """`-o x.yaml`: the bare PipelineSpec that kfp's Client uploads; --data and --serving-dir
    default to folders of the root."""
    from google.protobuf import json_format
    from kfp.pipeline_spec import pipeline_spec_pb2

    from pipeline.kubeflow_v2_runner import main

    out = tmp_path / "spec" / "pipeline.yaml"
    main(["--image", "registry.example/jukebox-tf:1", "--root", "gs://bucket/root",
          "-o", str(out), "--beam-arg=--direct_num_workers=4"])
    assert f"wrote {out}: 14 tasks" in capsys.readouterr().out
    assert os.listdir(out.parent) == ["pipeline.yaml"]  # no temp file left behind
    with open(out) as f:
        spec = json_format.ParseDict(yaml.safe_load(f), pipeline_spec_pb2.PipelineSpec())
    assert _constant(spec, "AudioExampleGen", "input_base") == "gs://bucket/root/data"
    assert json.loads(_constant(spec, "Pusher", "push_destination"))["filesystem"][
        "base_directory"] == "gs://bucket/root/serving/jukebox"
    executors = spec.deployment_spec["executors"]
    assert executors["Pusher_executor"]["container"]["image"] == "registry.example/jukebox-tf:1"
    assert executors["Pusher_executor"]["container"]["args"][-1] == "--direct_num_workers=4"


def test_failed_compile_leaves_the_previous_spec(tmp_path, monkeypatch):
    from tfx.orchestration.kubeflow.v2 import kubeflow_v2_dag_runner

    from pipeline.kubeflow_v2_runner import compile_pipeline

    out = tmp_path / "pipeline.json"
    out.write_text("previous")

    def half_write(job, description, path):
        with open(path, "w") as f:
            f.write("{half")
        raise OSError("disk full")

    monkeypatch.setattr(kubeflow_v2_dag_runner, "_write_pipeline_spec_to_file", half_write)
    with pytest.raises(OSError, match="disk full"):
        compile_pipeline(str(out), **GOLDEN_ARGS)
    assert out.read_text() == "previous"
    assert os.listdir(tmp_path) == ["pipeline.json"]


@pytest.mark.parametrize("output, override, message", [
    ("pipeline.json", dict(image=""), "image must name a container image"),
    ("pipeline.json", dict(pipeline_root="/mnt/pipeline"), "pipeline_root must be a URI"),
    ("pipeline.json", dict(data_root="audio"), "data_root must be a URI .* or an absolute path"),
    ("pipeline.json", dict(serving_model_dir="serving/jukebox"), "serving_model_dir must be"),
    ("pipeline.txt", dict(), "must end with one of .json, .yaml, .yml"),
])
def test_rejects_arguments_meaningless_in_a_container(tmp_path, output, override, message):
    from pipeline.kubeflow_v2_runner import compile_pipeline

    with pytest.raises(ValueError, match=message):
        compile_pipeline(str(tmp_path / output), **{**GOLDEN_ARGS, **override})
    assert os.listdir(tmp_path) == []
