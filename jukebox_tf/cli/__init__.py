"""`jukebox-tf`: one command line, a subcommand per task. Each subcommand lives in its own
module with `register(subparsers)`; heavy imports happen inside the command, so `--help` and
the audio commands start without loading TensorFlow."""

from __future__ import annotations

import argparse
import os
import sys

# TensorFlow's C++ start-up chatter (CUDA plugin probing, CPU feature notes) drowns the output
# of short commands; warnings and errors still show.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from jukebox_tf import __version__, xla_cache
from jukebox_tf.cli import (demo, export, generate, import_weights, ingest, make_demo_data,
                            pipeline, prior, sample, serve, vqvae)
from jukebox_tf.errors import JukeboxError

COMMANDS = (ingest, make_demo_data, vqvae, prior, import_weights, sample, export, serve, generate,
            pipeline, demo)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="jukebox-tf",
        description="Jukebox (hierarchical VQ-VAE + transformer priors) on TensorFlow.")
    parser.add_argument("--version", action="version", version=f"jukebox-tf {__version__}")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in COMMANDS:
        module.register(subparsers)
    return parser


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser().parse_args(argv)
    xla_cache.enable()  # before the command imports TensorFlow
    args.argv = argv  # the command as given: `--local-workers` re-runs it in each worker
    try:
        return args.func(args) or 0
    except JukeboxError as e:
        print(f"jukebox-tf {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"jukebox-tf {args.command}: interrupted", file=sys.stderr)
        return 130
