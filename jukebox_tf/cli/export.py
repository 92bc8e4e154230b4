"""`jukebox-tf export`: trained runs -> a versioned SavedModel that TF Serving loads."""

from __future__ import annotations

import sys


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "export", help="export the trained models as a SavedModel for TF Serving",
        description="Write MODEL_BASE/<version>/: one SavedModel with the signatures encode, "
        "decode, sample, upsample, generate (= serving_default) and metadata, the label "
        "vocabularies and metadata in assets/, serving limits and TF Serving warmup requests "
        "in assets.extra/. The version is written under a temporary name and renamed into "
        "place, so a server polling MODEL_BASE never loads half of it.")
    p.add_argument("--vqvae", metavar="RUN",
                   help="VQ-VAE run directory (default: the one the priors' codes record)")
    p.add_argument("--prior", metavar="RUN", help="top-level prior run directory")
    p.add_argument("--upsamplers", nargs="+", default=[], metavar="RUN",
                   help="upsampler run directories (any order)")
    p.add_argument("--out", required=True, metavar="MODEL_BASE",
                   help="model base path (the base_path of models.config)")
    p.add_argument("--version", type=int, metavar="N",
                   help="version number (default: one more than the largest in MODEL_BASE)")
    p.add_argument("--model-name", default="jukebox",
                   help="model name in the warmup requests (default: jukebox)")
    p.add_argument("--no-ema", action="store_true", help="export the raw weights, not the EMA")
    p.add_argument("--max-seconds", type=float, default=20.0,
                   help="longest `generate` request the serving limits allow (default 20)")
    p.add_argument("--max-sample-seconds", type=float, default=600.0,
                   help="longest `sample` request, as audio seconds of top-level codes "
                        "(default 600)")
    p.add_argument("--no-warmup", action="store_true", help="write no warmup requests")
    xla = p.add_mutually_exclusive_group()
    xla.add_argument("--xla", action="store_const", const=True, default=None,
                     help="write the XLA twins of the sampling signatures (sample_xla, "
                          "upsample_xla, generate_xla: the fast path for a server with XLA "
                          "enabled). Default: when every prior has at most 200M weights (the "
                          "released 1B and 5B priors sample faster uncompiled on a CPU)")
    xla.add_argument("--no-xla", dest="xla", action="store_const", const=False,
                     help="leave the XLA twins out")
    p.add_argument("--quiet", action="store_true", help="print only the result")
    p.set_defaults(func=run)


def _log(args):
    def log(message: str) -> None:
        if not args.quiet:
            print(f"jukebox-tf export: {message}", file=sys.stderr)
    return log


def check_args(args) -> None:
    """Everything that can be checked before any run is read."""
    import os

    from jukebox_tf.errors import JukeboxError
    from jukebox_tf.export.versions import next_version

    if args.version is not None and args.version < 0:
        raise JukeboxError(f"--version must be a non-negative integer, got {args.version}")
    if not args.max_seconds > 0 or not args.max_sample_seconds > 0:
        raise JukeboxError("--max-seconds and --max-sample-seconds must be positive")
    if args.prior is None and not args.upsamplers:
        raise JukeboxError("nothing to export: pass --prior RUN and/or --upsamplers RUN ...")
    if args.version is not None and os.path.exists(os.path.join(args.out, str(args.version))):
        raise JukeboxError(f"{os.path.join(args.out, str(args.version))} exists: version "
                           f"{args.version} was exported already (choose another --version, "
                           f"or leave it out for the next one, {next_version(args.out)})")


def load_runs(args):
    """The runs of the arguments, checked against each other and loaded (runs.Hierarchy)."""
    from jukebox_tf.sampling.runs import load_weights, plan_hierarchy

    log = _log(args)
    plan = plan_hierarchy(args.vqvae, args.prior, args.upsamplers)
    for note in plan.notes:
        log(f"note: {note}")
    for warning in getattr(plan, "warnings", ()):
        print(f"jukebox-tf export: warning: {warning}", file=sys.stderr)
    log(f"loading the VQ-VAE ({plan.vqvae_run}) and the priors of levels "
        f"{sorted(plan.runs, reverse=True)}")
    return load_weights(plan, use_ema=not args.no_ema)


def export_runs(args, runs):
    """Exports loaded runs as the arguments say; returns the ExportResult."""
    from jukebox_tf.export import ExportLimits, export_models

    log = _log(args)
    limits = ExportLimits(max_generate_seconds=args.max_seconds,
                          max_sample_seconds=args.max_sample_seconds)
    result = export_models(runs.vqvae, runs.priors, args.out, args.version,
                           vocab=runs.vocab, level_vocabs=runs.level_vocabs, limits=limits,
                           model_name=args.model_name, warmup=not args.no_warmup,
                           xla=args.xla, log=log)
    log(f"signatures: {', '.join(result.signatures)} (serving_default = "
        f"{'generate' if 'generate' in result.signatures else 'metadata'})")
    log(f"{result.size_bytes / 2**20:.1f} MiB in {result.seconds:.0f} s")
    return result


def run(args) -> int:
    check_args(args)
    result = export_runs(args, load_runs(args))
    print(result.path)
    return 0
