"""`jukebox-tf make-demo-data DIR`: a small synthetic, labelled music corpus."""

from __future__ import annotations


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "make-demo-data", help="synthesize a small labelled demo corpus",
        description="Synthesize, deterministically from a seed, a few minutes of music by "
        "several artists and genres that differ audibly, as audio files plus metadata.csv.")
    p.add_argument("out_dir", metavar="DIR")
    add_demo_options(p)
    p.set_defaults(func=run)


def add_demo_options(p) -> None:
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--artists", type=int, default=4)
    p.add_argument("--tracks-per-artist", type=int, default=3)
    p.add_argument("--track-seconds", type=float, default=20.0)


def make(args, out_dir: str):
    from jukebox_tf.audio.demo_data import make_demo_data

    return make_demo_data(out_dir, seed=args.seed, num_artists=args.artists,
                          tracks_per_artist=args.tracks_per_artist,
                          track_seconds=args.track_seconds)


def run(args) -> int:
    metadata = make(args, args.out_dir)
    print(f"wrote the demo corpus to {args.out_dir} (metadata: {metadata})")
    return 0
