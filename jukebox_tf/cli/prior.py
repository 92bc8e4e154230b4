"""`jukebox-tf train-prior`: the top-level prior and the upsamplers, on pre-encoded codes."""

from __future__ import annotations

import os

from jukebox_tf.cli.training_args import (add_training_arguments, print_run_location,
                                          spawn_local_workers, train_config)
from jukebox_tf.prior.config import SIZES


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "train-prior", help="train a prior (top level) or an upsampler on encoded codes",
        description="Train the prior of one VQ-VAE level on the codes of `jukebox-tf encode`: "
        "the top level is a TopLevelPrior (labels, timing, optional lyrics), lower levels are "
        "upsamplers conditioned on the level above. Same loop, checkpoints, EMA and "
        "TensorBoard logs as train-vqvae (TF_CONFIG selects multi-worker).")
    p.add_argument("--level", type=int, required=True,
                   help="VQ-VAE level to model, from 0 to the codes' top level (the top level: "
                        "the prior; below: upsamplers)")
    p.add_argument("--codes", required=True, help="codes folder from `jukebox-tf encode`")
    p.add_argument("--preset", choices=SIZES,
                   help="transformer size (default small; upsamplers use the preset's "
                        "_upsampler variant)")
    p.add_argument("--lyrics", nargs="?", const="encoder", choices=("encoder", "prefix"),
                   help="top level: condition on lyrics, by a lyric encoder read through "
                        "cross-attention (encoder, the default; as the 5B lyrics model) or as "
                        "characters before each window's codes in the one transformer "
                        "(prefix; as the 1B lyrics model)")
    p.add_argument("--no-labels", action="store_true",
                   help="no artist/genre/timing conditioning (a learned start token instead)")
    add_training_arguments(p)
    p.add_argument("--labels", choices=("map", "replace"),
                   help="with --init-from: map the codes' artist and genre names onto RUN's "
                        "(known names keep their embedding; new ones get new rows, set to the "
                        "mean of RUN's; the default), or replace RUN's label embeddings with "
                        "fresh ones for the codes' names")
    p.epilog = ("--freeze parts of a prior: labels (artist and genre embeddings), conditioner "
                "(labels, timing, the level above, lyrics), layers:N (the first N transformer "
                "layers). Fine-tuning a released top prior on your music: train-prior --level "
                "2 --codes CODES --init-from RUNS/prior_5b --weight-decay 0.01 (the learning "
                "rate anneals to 0 at the last step)")
    p.set_defaults(func=train)


def _task(args):
    from jukebox_tf.cli.training_args import refuse_with_init_from, resumed_start
    from jukebox_tf.codes.format import load_codes_manifest
    from jukebox_tf.errors import JukeboxError
    from jukebox_tf.prior import get_preset, preset_for_level
    from jukebox_tf.prior.config import PriorConfig
    from jukebox_tf.prior.label_vocab import LabelVocab
    from jukebox_tf.prior.task import PriorTask, prior_run_info

    if args.init_from:
        refuse_with_init_from(args, {"preset": "--preset", "lyrics": "--lyrics",
                                     "no_labels": "--no-labels"})
    elif (args.labels or args.freeze) and not args.resume:
        raise JukeboxError("--labels and --freeze apply to a starting model: they need "
                           "--init-from")
    if args.resume and os.path.isfile(os.path.join(args.out, "task.json")):
        info = prior_run_info(args.out)
        saved = PriorConfig.from_dict(info["prior"])
        if saved.level != args.level:
            raise JukeboxError(f"{args.out} trains level {saved.level}, not {args.level}")
        init, freeze = resumed_start(args, info)
        # A fine-tuned model's names are its own, not the codes'.
        vocab = LabelVocab.from_codes_info(info["codes"]) if init and saved.labels else None
        # The run's own config: the model must match its checkpoints whatever the flags say.
        return PriorTask(saved, args.codes, args.batch_size, vocab=vocab, init_from=init,
                         freeze=freeze)
    if args.init_from:
        return PriorTask.from_run(args.init_from, args.codes, args.level, args.batch_size,
                                  labels=args.labels or "map", freeze=args.freeze or ())
    levels = load_codes_manifest(args.codes)["levels"]
    if not 0 <= args.level < levels:
        raise JukeboxError(f"{args.codes}: the codes have {levels} levels, no level {args.level}")
    if args.lyrics and args.level != levels - 1:
        raise JukeboxError("--lyrics conditions the top-level prior only")
    preset = preset_for_level(args.preset or "small", args.level, levels - 1)
    return PriorTask.from_codes(get_preset(preset), args.codes, args.level, args.batch_size,
                                labels=not args.no_labels, lyrics=args.lyrics)


def train(args) -> int:
    from jukebox_tf.training import strategy_from_env
    from jukebox_tf.training import train as train_loop

    spawned = spawn_local_workers(args)
    if spawned is not None:
        return spawned
    strategy = strategy_from_env()  # before the task: TF_CONFIG's collectives need a fresh TF
    task = _task(args)
    metrics = train_loop(task, train_config(args), args.out, strategy=strategy,
                         resume=args.resume, progress=not args.quiet)
    kind = "prior" if not task.config.is_upsampler else "upsampler"
    keys = ("step", "loss", "bits_per_token", "accuracy", "lyric_bits_per_token")
    print(f"trained the {kind} (level {task.config.level}): "
          + ", ".join(f"{k.replace('_', ' ').replace(' per ', '/')} {metrics[k]:.4g}"
                      for k in keys if k in metrics))
    print_run_location(args.out)
    return 0
