"""`jukebox-tf demo --out DIR`: the main job end to end on the built-in demo data."""

from __future__ import annotations

import os

from jukebox_tf.cli import make_demo_data


def register(subparsers) -> None:
    p = subparsers.add_parser("demo", help="run the whole job on synthesized demo data",
                              description="Synthesize the demo corpus, ingest it, and draw "
                              "what went into the dataset.")
    p.add_argument("--out", default="demo_out", help="output folder (default demo_out)")
    make_demo_data.add_demo_options(p)
    p.add_argument("--sample-rate", type=int, default=22050)
    p.set_defaults(run=run)


def first_chunk_per_artist(dataset_dir: str, limit: int = 6) -> list[tuple[str, "object"]]:
    """(title, audio) for the first chunk of each artist, read back through tf.data."""
    from jukebox_tf.audio.dataset import make_dataset

    ds = make_dataset(dataset_dir, batch_size=1, shuffle=False, repeat=False, random_crop=False,
                      drop_remainder=False)
    items = {}
    for batch in ds:
        artist = batch["artist"][0].numpy().decode()
        if artist not in items:
            n = int(batch["num_samples"][0])
            items[artist] = (f"{artist} - {batch['track_id'][0].numpy().decode()}",
                             batch["audio"][0, :n, 0].numpy())
        if len(items) == limit:
            break
    return list(items.values())


def run(args) -> int:
    from jukebox_tf.audio.ingest import IngestConfig, format_summary, ingest
    from jukebox_tf.audio.spectrogram import save_spectrograms_png

    audio_dir = os.path.join(args.out, "audio")
    dataset_dir = os.path.join(args.out, "dataset")
    print(f"[1/3] synthesizing the demo corpus into {audio_dir}")
    make_demo_data.make(args, audio_dir)
    print(f"[2/3] ingesting it into {dataset_dir}")
    manifest = ingest(audio_dir, dataset_dir,
                      IngestConfig(sample_rate=args.sample_rate, chunk_seconds=10.0))
    print(format_summary(manifest, dataset_dir))
    picture = os.path.join(args.out, "dataset_overview.png")
    print(f"[3/3] drawing one chunk per artist from the dataset into {picture}")
    save_spectrograms_png(picture, first_chunk_per_artist(dataset_dir), manifest["sample_rate"])
    print(f"\ndemo finished:\n  audio:    {audio_dir} (metadata.csv beside it)\n"
          f"  dataset:  {dataset_dir} (dataset.json: counts, vocabularies, rejected files)\n"
          f"  picture:  {picture}")
    return 0
