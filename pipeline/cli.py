"""`jukebox-tf pipeline run|compile`: the TFX pipeline from the command line.

    jukebox-tf pipeline run --data AUDIO_DIR --root PIPELINE_ROOT [--preset tiny|small]
        [--vqvae-steps N] [--prior-steps N] [--upsampler-steps N] [--serving-dir DIR]
        [--metadata FILE] [--strict] [--beam-arg=--direct_num_workers=2 ...] [--no-cache]
        [--vqvae-from RUN] [--upsamplers-from RUN_L1 RUN_L0] [--top-prior-from RUN]
    jukebox-tf pipeline compile --kubeflow --image IMAGE -o pipeline.json --root gs://...
        [--data gs://...] [--serving-dir gs://...] [--preset ...]

`run`'s folders may be URIs (gs://...); its ML Metadata is a local SQLite file (--metadata,
default ROOT/metadata.sqlite, so required for a URI root).
"""

from __future__ import annotations

import os
import sys

STEP_FLAGS = ("vqvae_steps", "prior_steps", "upsampler_steps")


def add_arguments(parser) -> None:
    sub = parser.add_subparsers(dest="pipeline_command", required=True, metavar="COMMAND")
    run_p = sub.add_parser(
        "run", help="run the whole pipeline here (LocalDagRunner, SQLite ML Metadata)",
        description="Run AudioExampleGen -> StatisticsGen/SchemaGen -> VQ-VAE Trainer -> CodeGen "
        "-> prior Trainers -> ModelExport -> Evaluator -> infra validation -> Pusher on this "
        "machine. A second run with nothing changed reuses the cached outputs.")
    run_p.add_argument("--data", required=True, help="folder of audio files (+ metadata sidecar)")
    run_p.add_argument("--root", required=True, help="pipeline root (outputs and ML Metadata)")
    run_p.add_argument("--serving-dir", help="model base path the Pusher pushes versions to "
                       "(default ROOT/serving/jukebox)")
    run_p.add_argument("--metadata", metavar="FILE",
                       help="local SQLite file for ML Metadata (default ROOT/metadata.sqlite; "
                            "needed when ROOT is a URI such as gs://...)")
    run_p.add_argument("--no-cache", action="store_true", help="re-run every component")
    _common(run_p)
    run_p.set_defaults(pipeline_func=run)

    compile_p = sub.add_parser(
        "compile", help="compile the pipeline for Kubeflow Pipelines v2 (a JSON spec)",
        description="Write the Kubeflow Pipelines v2 spec of the pipeline; see BUILD.md for "
        "building the image and submitting the spec.")
    compile_p.add_argument("--kubeflow", action="store_true", required=True,
                           help="compile for Kubeflow Pipelines v2 (the only target)")
    compile_p.add_argument("--image", required=True,
                           help="container image every component runs in (BUILD.md)")
    compile_p.add_argument("-o", "--output", required=True,
                           help="spec to write: .json (PipelineJob, Vertex AI) or .yaml "
                                "(PipelineSpec, kfp Client)")
    compile_p.add_argument("--root", required=True,
                           help="pipeline root the cluster writes to (gs://..., s3://...)")
    compile_p.add_argument("--data", help="audio folder the cluster reads (default ROOT/data)")
    compile_p.add_argument("--serving-dir", help="model base path TF Serving reads "
                           "(default ROOT/serving/jukebox)")
    _common(compile_p)
    compile_p.set_defaults(pipeline_func=compile_spec)


def _common(p) -> None:
    from pipeline.configs import PRESETS

    p.add_argument("--preset", default="tiny", choices=tuple(PRESETS))
    for flag in STEP_FLAGS:
        p.add_argument(f"--{flag.replace('_', '-')}", type=int, metavar="N",
                       help=f"override the preset's {flag.replace('_', ' ')}")
    p.add_argument("--strict", action="store_true",
                   help="the ExampleGen rejects a truncated or damaged file (default: it keeps "
                        "what decodes and flags the file)")
    p.add_argument("--sample-rate", type=int, metavar="HZ",
                   help="ingest at HZ (default: the preset's, or the --vqvae-from VQ-VAE's)")
    p.add_argument("--vqvae-from", metavar="RUN",
                   help="use this VQ-VAE run (e.g. an import-weights run) instead of training "
                        "one: it enters through an Importer and CodeGen encodes with it")
    p.add_argument("--upsamplers-from", nargs=2, metavar="RUN",
                   help="use these upsampler runs (level 1, then level 0) instead of training")
    p.add_argument("--top-prior-from", metavar="RUN",
                   help="fine-tune this top-prior run on the music instead of training one "
                        "from scratch; the Evaluator blesses the result only when it beats "
                        "this prior's bits per token on the eval split")
    p.add_argument("--labels", choices=("map", "replace"), default="map",
                   help="with --top-prior-from: map the music's artist and genre names onto "
                        "the run's (default) or replace its label embeddings")
    p.add_argument("--beam-arg", action="append", default=[], metavar="ARG",
                   help="a Beam pipeline option for every Beam component, e.g. "
                        "--beam-arg=--direct_num_workers=2 (repeatable)")


def config_from_args(args, read_runs: bool = True):
    """The PipelineConfig of the options. read_runs: take the sample rate from the
    --vqvae-from run when --sample-rate is not given (off when compiling for a cluster)."""
    from pipeline.configs import get_config

    overrides = {f: getattr(args, f) for f in STEP_FLAGS if getattr(args, f) is not None}
    sample_rate = args.sample_rate
    if sample_rate is None and args.vqvae_from and read_runs:
        from jukebox_tf.sampling.runs import read_vqvae_config

        sample_rate = read_vqvae_config(args.vqvae_from, "--vqvae-from").sample_rate
    if sample_rate is not None:
        overrides["sample_rate"] = sample_rate
    return get_config(args.preset, strict_ingest=args.strict, vqvae_from=args.vqvae_from,
                      upsamplers_from=tuple(args.upsamplers_from or ()),
                      top_prior_from=args.top_prior_from, top_prior_labels=args.labels,
                      **overrides)


def main(args) -> int:
    return args.pipeline_func(args)


def run(args) -> int:
    from jukebox_tf import storage
    from jukebox_tf.errors import JukeboxError
    from pipeline import local_runner

    if not storage.isdir(args.data):
        raise JukeboxError(f"--data {args.data!r}: not a folder")
    if storage.is_remote(args.root) and not args.metadata:
        raise JukeboxError(f"--root {args.root!r} is not a local folder: give --metadata FILE, "
                           f"a local SQLite file for ML Metadata")
    if args.metadata and storage.is_remote(args.metadata):
        raise JukeboxError(f"--metadata {args.metadata!r}: ML Metadata's SQLite file must be "
                           f"local")
    metadata = os.path.abspath(args.metadata) if args.metadata else None
    config = config_from_args(args)
    serving = local_runner.run(args.data, args.root, config, serving_model_dir=args.serving_dir,
                               beam_pipeline_args=args.beam_arg, enable_cache=not args.no_cache,
                               metadata_file=metadata)
    print(format_summary(args.root, serving, metadata))
    return 0


def compile_spec(args) -> int:
    from pipeline.kubeflow_v2_runner import compile_pipeline

    compile_pipeline(args.output, image=args.image, pipeline_root=args.root,
                     config=config_from_args(args, read_runs=False),
                     data_root=args.data,
                     serving_model_dir=args.serving_dir, beam_pipeline_args=args.beam_arg)
    print(f"wrote {args.output} (image {args.image}); submit it as BUILD.md shows")
    return 0


def format_summary(root: str, serving_dir: str, metadata_file: str | None = None) -> str:
    """What each component did, the blessing, the pushed version and where things are.
    metadata_file: the SQLite ML Metadata (default ROOT/metadata.sqlite)."""
    import json

    from jukebox_tf import storage
    from pipeline.local_runner import metadata_path
    from pipeline.metadata import custom_property, last_run, open_store

    root = storage.abspath(root)
    metadata_file = metadata_file or metadata_path(root)
    with open_store(metadata_file) as store:
        nodes = last_run(store)
    lines = [f"pipeline root {root} (ML Metadata {metadata_file})"]
    lines += [f"  {name:28s} {node.state.lower()}" for name, node in nodes.items()]
    examples = nodes.get("AudioExampleGen")
    if examples and "examples" in examples.outputs:
        report_path = os.path.join(examples.output("examples").uri, "ingest_report.json")
        if storage.isfile(report_path):
            with storage.open(report_path) as f:
                report = json.load(f)
            for key, title in (("rejected", "rejected"), ("flagged", "flagged (kept)")):
                lines += [f"  {title} {item['path']}: {item['reason']}"
                          for item in report.get(key, [])]
    evaluator = next((n for k, n in nodes.items() if "Evaluator" in k), None)
    if evaluator and "blessing" in evaluator.outputs:
        blessed = custom_property(evaluator.output("blessing"), "blessed", 0)
        lines.append(f"evaluation: {'blessed' if blessed else 'NOT blessed'} "
                     f"({os.path.join(evaluator.output('evaluation').uri, 'metrics.json')})")
    pusher = nodes.get("Pusher")
    if pusher and "pushed_model" in pusher.outputs:
        pushed = pusher.output("pushed_model")
        if custom_property(pushed, "pushed", 0):
            lines.append(f"pushed version {custom_property(pushed, 'pushed_version')} to "
                         f"{custom_property(pushed, 'pushed_destination')}")
        else:
            lines.append(f"nothing pushed (not blessed); serving base path {serving_dir}")
    lines.append(f"TensorBoard (every Trainer's logs): tensorboard --logdir {root}")
    return "\n".join(lines)


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(prog="python -m pipeline.cli")
    add_arguments(parser)
    sys.exit(main(parser.parse_args()))
