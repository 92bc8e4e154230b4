"""Compiles the pipeline for Kubeflow Pipelines v2 (Vertex AI Pipelines or a KFP 2 cluster).

    python -m pipeline.kubeflow_v2_runner --image REGISTRY/jukebox-tf:TAG \\
        --root gs://BUCKET/pipeline --data gs://BUCKET/audio -o pipeline.json

(`jukebox-tf pipeline compile --kubeflow` is the same.) Nothing runs here: KubeflowV2DagRunner
turns `create_pipeline` into a pipeline spec in which every component is a container of
`image` (built by the repo's Dockerfile, see BUILD.md) running
`python -m tfx.orchestration.kubeflow.v2.container.kubeflow_v2_run_executor` with the
component's executor class. ML Metadata is Kubeflow's, so the pipeline gets no metadata
connection. `-o x.json` writes a PipelineJob (Vertex AI's `PipelineJob(template_path=...)`),
`-o x.yaml` the bare PipelineSpec (kfp's `Client().create_run_from_pipeline_package`).
"""

from __future__ import annotations

import json
import os
import tempfile
from typing import Sequence

from pipeline.configs import PipelineConfig

SPEC_FORMATS = (".json", ".yaml", ".yml")  # what KubeflowV2DagRunner writes, by file suffix


def _check_location(name: str, value: str, *, remote: bool) -> None:
    """Paths in the spec are read inside the containers: a local relative path means nothing
    there, and the pipeline root is where Kubeflow itself stores artifacts (a bucket)."""
    if "://" in value:
        return
    if remote or not os.path.isabs(value):
        what = "a URI (gs://..., s3://..., minio://...)" if remote else \
            "a URI (gs://...) or an absolute path mounted in the containers"
        raise ValueError(f"{name} must be {what}, got {value!r}")


def compile_pipeline(output_path: str, *, image: str, pipeline_root: str, config: PipelineConfig,
                     data_root: str | None = None, serving_model_dir: str | None = None,
                     beam_pipeline_args: Sequence[str] = ()) -> dict:
    """Writes the pipeline spec for `image` to `output_path` (.json: PipelineJob; .yaml/.yml:
    PipelineSpec), atomically; returns the compiled PipelineJob as a dict ({"displayName",
    "labels", "pipelineSpec", "runtimeConfig"}), whatever the file format. `data_root` and
    `serving_model_dir` default to ROOT/data and ROOT/serving/MODEL_NAME."""
    from tfx import v1 as tfx

    from pipeline.local_runner import serving_dir
    from pipeline.pipeline import create_pipeline

    pipeline_root = pipeline_root.rstrip("/")
    data_root = data_root or f"{pipeline_root}/data"
    serving_model_dir = serving_model_dir or serving_dir(pipeline_root, config.model_name)

    if not image or image != image.strip():
        raise ValueError(f"image must name a container image (REGISTRY/jukebox-tf:TAG), "
                         f"got {image!r}")
    suffix = os.path.splitext(output_path)[1]
    if suffix not in SPEC_FORMATS:
        raise ValueError(f"output {output_path!r} must end with one of {', '.join(SPEC_FORMATS)}")
    _check_location("pipeline_root", pipeline_root, remote=True)
    _check_location("data_root", data_root, remote=False)
    _check_location("serving_model_dir", serving_model_dir, remote=False)
    imported = {"vqvae_from": config.vqvae_from, "top_prior_from": config.top_prior_from,
                **{f"upsamplers_from[{i}]": run for i, run in enumerate(config.upsamplers_from)}}
    for name, run in imported.items():
        if run:
            _check_location(name, run, remote=False)

    # The containers read the imported runs; this machine may not reach them.
    pipeline = create_pipeline(pipeline_root=pipeline_root, data_root=data_root, config=config,
                               serving_model_dir=serving_model_dir,
                               beam_pipeline_args=beam_pipeline_args, check_runs=False)
    out_dir = os.path.dirname(os.path.abspath(output_path))
    os.makedirs(out_dir, exist_ok=True)
    # The runner picks the format by the file's suffix, so the temp name keeps it.
    fd, tmp = tempfile.mkstemp(dir=out_dir, prefix=f".{os.path.basename(output_path)}.tmp-",
                               suffix=suffix)
    os.close(fd)
    try:
        runner = tfx.orchestration.experimental.KubeflowV2DagRunner(
            config=tfx.orchestration.experimental.KubeflowV2DagRunnerConfig(default_image=image),
            output_dir=out_dir, output_filename=os.path.basename(tmp))
        job = runner.run(pipeline)
        os.chmod(tmp, 0o644)  # mkstemp's 0600 would hide the spec from other users
        os.replace(tmp, output_path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    # Round-trip so the caller holds plain JSON types, exactly what a .json file holds.
    return json.loads(json.dumps(job))


def main(argv: Sequence[str] | None = None) -> dict:
    import argparse

    from pipeline.configs import get_config

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--image", required=True, help="container image the steps run, "
                        "built from this repo's Dockerfile (REGISTRY/jukebox-tf:TAG)")
    parser.add_argument("-o", "--output", default="pipeline.json",
                        help="spec file: .json (PipelineJob, Vertex AI) or .yaml (PipelineSpec, "
                             "KFP client); default %(default)s")
    parser.add_argument("--preset", default="tiny")
    parser.add_argument("--root", required=True, help="pipeline root, e.g. gs://BUCKET/pipeline")
    parser.add_argument("--data", help="folder of audio files (default ROOT/data)")
    parser.add_argument("--serving-dir", help="model base path the Pusher writes versions to and "
                        "TF Serving reads (default ROOT/serving/MODEL_NAME)")
    parser.add_argument("--beam-arg", action="append", default=[], dest="beam_args",
                        help="a Beam pipeline option for every step, e.g. "
                             "--beam-arg=--direct_num_workers=4 (repeatable)")
    args = parser.parse_args(argv)
    job = compile_pipeline(
        args.output, image=args.image, pipeline_root=args.root, config=get_config(args.preset),
        data_root=args.data, serving_model_dir=args.serving_dir,
        beam_pipeline_args=args.beam_args)
    tasks = job["pipelineSpec"]["root"]["dag"]["tasks"]
    print(f"wrote {args.output}: {len(tasks)} tasks, image {args.image}")
    return job


if __name__ == "__main__":
    main()
