"""The training-loop options that `train-vqvae` and `train-prior` share, the TrainConfig
they make, and `--local-workers`."""

from __future__ import annotations


def add_training_arguments(p) -> None:
    p.add_argument("--out", required=True, help="run directory")
    p.add_argument("--steps", type=int, required=True)
    p.add_argument("--resume", action="store_true", help="continue from the latest checkpoint")
    p.add_argument("--batch-size", type=int, default=4, help="global batch (default 4)")
    p.add_argument("--lr", type=float, default=3e-4)
    p.add_argument("--warmup-steps", type=int, default=100)
    p.add_argument("--checkpoint-every", type=int, default=500)
    p.add_argument("--log-every", type=int, default=10)
    p.add_argument("--media-every", type=int, default=200)
    p.add_argument("--ema-decay", type=float, default=0.999, help="0 turns the weight EMA off")
    p.add_argument("--mixed-precision", choices=("float16", "bfloat16"), default=None,
                   help="compute in float16 (loss-scaled; GPUs) or bfloat16 (TPUs, recent "
                        "GPUs, CPUs with AMX such as Xeon Sapphire Rapids); weights stay "
                        "float32")
    p.add_argument("--weight-decay", type=float, default=0.0,
                   help="decoupled weight decay (AdamW: w -= lr * decay * w each step; 0.01 is "
                        "a usual value for fine-tuning)")
    p.add_argument("--decay", choices=("linear", "cosine", "constant"), default="linear",
                   help="learning rate after the warm-up: linear or cosine anneal to 0 at the "
                        "last step (default linear), or constant")
    p.add_argument("--init-from", metavar="RUN",
                   help="start from the weights of RUN (a run of this command or of "
                        "import-weights): its configuration, step 0, a fresh optimizer; "
                        "options that would change the architecture are refused")
    p.add_argument("--freeze", nargs="+", metavar="PART",
                   help="parts training leaves unchanged bit for bit (see --help of the "
                        "command for the parts)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--local-workers", type=int, default=1, metavar="N",
                   help="train as N worker processes on this machine (multi-worker over "
                        "localhost, cores/N threads each; the global batch is split between "
                        "them). For CPU-only hosts: on 2 cores, 2 workers trained the small "
                        "prior 1.2-1.6x faster than one process on an Intel Xeon with AMX, "
                        "1.0-1.1x on an AMD EPYC")


def spawn_local_workers(args) -> int | None:
    """With --local-workers N > 1: runs this command as N workers and returns the exit code;
    else None (train here). Checks the options before any worker starts."""
    if args.local_workers == 1:
        return None
    import os
    import tempfile

    from jukebox_tf import storage
    from jukebox_tf.training.local_workers import check_can_spawn, run_local_workers

    check_can_spawn(args.local_workers, args.batch_size)
    # The worker logs stay on this machine, also when the run directory is remote (gs://).
    logs = (tempfile.mkdtemp(prefix="jukebox-tf-workers-") if storage.is_remote(args.out)
            else os.path.join(args.out, "workers"))
    # argparse keeps the last value given: each worker trains in its own process.
    return run_local_workers(args.argv + ["--local-workers", "1"], args.local_workers, logs)


def train_config(args):
    """The TrainConfig of the parsed options (warm-up at most a tenth of the steps)."""
    from jukebox_tf.training import TrainConfig

    return TrainConfig(
        steps=args.steps, global_batch_size=args.batch_size, learning_rate=args.lr,
        warmup_steps=min(args.warmup_steps, max(args.steps // 10, 0)), decay=args.decay,
        weight_decay=args.weight_decay,
        ema_decay=args.ema_decay or None, mixed_precision=args.mixed_precision,
        checkpoint_every=args.checkpoint_every, log_every=args.log_every,
        media_every=args.media_every, seed=args.seed)


def refuse_with_init_from(args, flags: dict[str, str]) -> None:
    """With --init-from, the architecture is RUN's: refuse `flags` ({dest: "--flag"}) given."""
    from jukebox_tf.errors import JukeboxError

    given = [flag for dest, flag in flags.items() if getattr(args, dest) not in (None, False)]
    if given:
        raise JukeboxError(f"--init-from {args.init_from}: the model's architecture comes from "
                           f"that run; {', '.join(given)} would change it (leave "
                           f"{'it' if len(given) == 1 else 'them'} out)")


def resumed_start(args, saved: dict) -> tuple[dict | None, list[str]]:
    """(init_from, freeze) of a run being resumed, from its task.json `saved`; refuses
    --init-from or --freeze that differ from what the run started with."""
    from jukebox_tf.errors import JukeboxError

    init, freeze = saved.get("init_from"), list(saved.get("freeze", []))
    if args.init_from and (init is None or not _same_path(init["run"], args.init_from)):
        raise JukeboxError(f"--resume: {args.out} did not start from {args.init_from} "
                           f"({'from ' + init['run'] if init else 'from scratch'})")
    if args.freeze is not None and list(args.freeze) != freeze:
        raise JukeboxError(f"--resume: {args.out} freezes {' '.join(freeze) or 'nothing'}; "
                           f"resume with the same --freeze, or without it")
    return init, freeze


def _same_path(a: str, b: str) -> bool:
    from jukebox_tf import storage

    return storage.abspath(a).rstrip("/") == storage.abspath(b).rstrip("/")


def print_run_location(run_dir: str) -> None:
    import os

    logs = os.path.join(run_dir, "tensorboard")
    print(f"  run: {run_dir} (TensorBoard: tensorboard --logdir {logs})")
