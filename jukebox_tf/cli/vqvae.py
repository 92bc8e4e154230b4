"""`jukebox-tf train-vqvae`, `reconstruct` and `encode`: the VQ-VAE's commands."""

from __future__ import annotations

import os

from jukebox_tf.cli.training_args import (add_training_arguments, print_run_location,
                                          spawn_local_workers, train_config)
from jukebox_tf.vqvae.config import PRESETS


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "train-vqvae", help="train the hierarchical VQ-VAE on an ingested dataset",
        description="Train the hierarchical VQ-VAE with the strategy-aware loop (TF_CONFIG selects "
        "multi-worker). Checkpoints, TensorBoard logs and the config go to --out.")
    p.add_argument("--data", required=True, help="dataset folder from `jukebox-tf ingest`")
    p.add_argument("--preset", choices=tuple(PRESETS), help="default small")
    add_training_arguments(p)
    p.epilog = ("--freeze parts of a VQ-VAE: encoder, decoder, codebook (every level's; "
                "freezing encoder and codebook keeps the codes of the starting model while "
                "the decoders learn your music)")
    p.add_argument("--sample-length", type=int, help="training window in samples "
                   "(default: the preset's)")
    p.set_defaults(func=train)

    p = subparsers.add_parser(
        "reconstruct", help="encode and decode an audio file at one level",
        description="Encode INPUT with a trained VQ-VAE, decode it from one level's codes, "
        "write the WAV and a before/after spectrogram PNG, print the spectral convergence.")
    p.add_argument("--run", required=True, help="run directory of train-vqvae")
    p.add_argument("input", metavar="INPUT")
    p.add_argument("--level", type=int, default=0)
    p.add_argument("-o", "--output", required=True, help="output WAV")
    p.add_argument("--max-seconds", type=float, help="only the first seconds of INPUT")
    add_precision_argument(p)
    p.set_defaults(func=reconstruct)

    p = subparsers.add_parser(
        "encode", help="pre-encode a dataset into codes for prior training",
        description="Encode every chunk of an ingested dataset at every level, once, into "
        "TFRecords of codes with their labels (the priors' training data).")
    p.add_argument("--run", required=True, help="run directory of train-vqvae")
    p.add_argument("--data", required=True, help="dataset folder from `jukebox-tf ingest`")
    p.add_argument("--out", required=True, help="codes folder")
    p.add_argument("--batch-size", type=int, default=8)
    add_precision_argument(p)
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=encode)


def add_precision_argument(parser) -> None:
    from jukebox_tf.training.config import INFERENCE_PRECISIONS

    parser.add_argument(
        "--precision", choices=INFERENCE_PRECISIONS, default="float32",
        help="compute precision of the VQ-VAE (bfloat16: encodes 1.4x and decodes 1.7x faster "
        "on CPUs with AMX, e.g. Sapphire Rapids; reconstructions within 0.1 dB of float32's)")


def train(args) -> int:
    from jukebox_tf.training import strategy_from_env
    from jukebox_tf.training import train as train_loop

    spawned = spawn_local_workers(args)
    if spawned is not None:
        return spawned
    strategy = strategy_from_env()  # before the task: TF_CONFIG's collectives need a fresh TF
    task = _task(args)
    config = task.config
    metrics = train_loop(task, train_config(args), args.out, strategy=strategy,
                         resume=args.resume, progress=not args.quiet)
    keys = ["step", "loss"] + [f"spectral_convergence_db/l{l}" for l in range(config.levels)] + [
        f"usage/l{l}" for l in range(config.levels)]
    print("trained the VQ-VAE: " + ", ".join(f"{k} {metrics[k]:.4g}" for k in keys
                                             if k in metrics))
    print_run_location(args.out)
    return 0


def _task(args):
    import dataclasses
    import json

    from jukebox_tf.cli.training_args import refuse_with_init_from, resumed_start
    from jukebox_tf.errors import JukeboxError
    from jukebox_tf.vqvae import get_preset
    from jukebox_tf.vqvae.config import VQVAEConfig
    from jukebox_tf.vqvae.task import VQVAETask

    if args.init_from:
        refuse_with_init_from(args, {"preset": "--preset"})
    elif args.freeze and not args.resume:
        raise JukeboxError("--freeze keeps parts of a starting model: it needs --init-from")
    task_json = os.path.join(args.out, "task.json")
    if args.resume and os.path.isfile(task_json):
        with open(task_json) as f:
            saved = json.load(f)
        init, freeze = resumed_start(args, saved)
        if init:  # the starting run's architecture, as saved
            return VQVAETask(VQVAEConfig.from_dict(saved["vqvae"]), args.data, args.batch_size,
                             saved.get("data_stats"), init["run"], freeze)
        saved_stats = saved.get("data_stats") or None  # the normalisers stay fixed
    elif args.init_from:
        return VQVAETask.from_run(args.init_from, args.data, args.batch_size,
                                  args.freeze or (), args.sample_length)
    else:
        saved_stats = None
    config = get_preset(args.preset or "small")
    if args.sample_length:
        config = dataclasses.replace(config, sample_length=args.sample_length)
    return VQVAETask(config, args.data, args.batch_size, saved_stats)


def reconstruct(args) -> int:
    from jukebox_tf.vqvae.reconstruct import reconstruct_file
    from jukebox_tf.vqvae.task import load_vqvae_run

    result = reconstruct_file(load_vqvae_run(args.run, precision=args.precision), args.input,
                              args.level, args.output, args.max_seconds)
    print(f"level {args.level}: spectral convergence {result['spectral_convergence_db']:.2f} dB "
          f"({result['spectral_convergence']:.4f}) over {result['seconds']:.1f} s\n"
          f"  wrote {result['wav']} and {result['png']}")
    return 0


def encode(args) -> int:
    from jukebox_tf.codes.encode import encode_dataset
    from jukebox_tf.vqvae.task import load_vqvae_run

    model = load_vqvae_run(args.run, precision=args.precision)
    manifest = encode_dataset(model, args.data, args.out, batch_size=args.batch_size,
                              progress=not args.quiet, source_run=args.run)
    print(f"encoded {manifest['chunks']} chunks into {args.out}: tokens per level "
          f"{manifest['tokens']} (hops {manifest['hop_lengths']})")
    return 0
