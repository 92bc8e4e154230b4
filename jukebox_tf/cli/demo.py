"""`jukebox-tf demo --out DIR`: the main job end to end on the built-in demo data."""

from __future__ import annotations

import os

from jukebox_tf.cli import make_demo_data


def register(subparsers) -> None:
    p = subparsers.add_parser("demo", help="run the whole job on synthesized demo data",
                              description="Synthesize the demo corpus and ingest it.")
    p.add_argument("--out", default="demo_out", help="output folder (default demo_out)")
    make_demo_data.add_demo_options(p)
    p.add_argument("--sample-rate", type=int, default=22050)
    p.set_defaults(run=run)


def run(args) -> int:
    from jukebox_tf.audio.ingest import IngestConfig, format_summary, ingest

    audio_dir = os.path.join(args.out, "audio")
    dataset_dir = os.path.join(args.out, "dataset")
    print(f"[1/2] synthesizing the demo corpus into {audio_dir}")
    make_demo_data.make(args, audio_dir)
    print(f"[2/2] ingesting it into {dataset_dir}")
    manifest = ingest(audio_dir, dataset_dir,
                      IngestConfig(sample_rate=args.sample_rate, chunk_seconds=10.0))
    print(format_summary(manifest, dataset_dir))
    print(f"\ndemo finished: audio in {audio_dir}, dataset in {dataset_dir}")
    return 0
