"""`jukebox-tf ingest INPUT_DIR OUTPUT_DIR`: audio folder -> TFRecord dataset."""

from __future__ import annotations


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "ingest", help="decode, resample and chunk a folder of audio into TFRecords",
        description="Decode a folder of audio files (wav, flac, ogg, mp3, aiff), mix to mono "
        "(or keep stereo), resample, cut into chunks and write sharded TFRecords plus a "
        "dataset.json manifest. Bad files are listed with a reason; the rest is ingested; "
        "truncated files keep what decodes and are flagged (--strict rejects them). "
        "Running it again after an interruption reuses the tracks already done.")
    p.add_argument("input_dir", metavar="INPUT_DIR")
    p.add_argument("output_dir", metavar="OUTPUT_DIR")
    add_audio_options(p)
    p.add_argument("--metadata", metavar="FILE", help="CSV or JSONL with columns path, artist, "
                   "genre, lyrics (default: INPUT_DIR/metadata.csv or metadata.jsonl if present)")
    p.add_argument("--shards", type=int, help="number of TFRecord shards (default: ~256 MiB each)")
    p.add_argument("--workers", type=int, help="decoding processes (default: one per CPU)")
    add_strict_option(p)
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def add_audio_options(p, sample_rate: int = 44100, chunk_seconds: float = 24.0) -> None:
    p.add_argument("--sample-rate", type=int, default=sample_rate,
                   help=f"output rate in Hz (default {sample_rate}; 22050 for the CPU presets)")
    p.add_argument("--chunk-seconds", type=float, default=chunk_seconds,
                   help=f"chunk length (default {chunk_seconds:g})")
    p.add_argument("--hop-seconds", type=float, help="distance between chunk starts "
                   "(default: the chunk length, no overlap)")
    p.add_argument("--channels", type=int, choices=(1, 2), default=1,
                   help="1: mix to mono (default); 2: keep stereo")


def add_strict_option(p) -> None:
    p.add_argument("--strict", action="store_true",
                   help="reject a truncated or damaged file (default: keep what decodes and "
                        "flag the file with the reason and the seconds kept)")


def config_from_args(args):
    from jukebox_tf.audio.ingest import IngestConfig

    return IngestConfig(sample_rate=args.sample_rate, channels=args.channels,
                        chunk_seconds=args.chunk_seconds, hop_seconds=args.hop_seconds,
                        shards=getattr(args, "shards", None),
                        workers=getattr(args, "workers", None),
                        strict=getattr(args, "strict", False))


def run(args) -> int:
    from jukebox_tf.audio.ingest import format_summary, ingest

    manifest = ingest(args.input_dir, args.output_dir, config_from_args(args),
                      metadata_path=args.metadata, progress=not args.quiet)
    print(format_summary(manifest, args.output_dir))
    return 0 if manifest["counts"]["files_ok"] else 1
