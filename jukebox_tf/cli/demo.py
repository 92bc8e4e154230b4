"""`jukebox-tf demo --out DIR`: the main job end to end on the built-in demo data."""

from __future__ import annotations

import glob
import os

from jukebox_tf.cli import make_demo_data


def register(subparsers) -> None:
    p = subparsers.add_parser("demo", help="run the whole job on synthesized demo data",
                              description="Synthesize the demo corpus, ingest it, train the "
                              "tiny VQ-VAE on it, reconstruct a track from every level and "
                              "pre-encode the dataset into codes.")
    p.add_argument("--out", default="demo_out", help="output folder (default demo_out)")
    make_demo_data.add_demo_options(p)
    p.add_argument("--sample-rate", type=int, default=22050)
    p.add_argument("--vqvae-steps", type=int, default=400, help="tiny VQ-VAE training steps")
    p.set_defaults(func=run)


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
    from jukebox_tf.training import TrainConfig, train
    from jukebox_tf.vqvae import get_preset
    from jukebox_tf.vqvae.codes import encode_dataset
    from jukebox_tf.vqvae.reconstruct import reconstruct_file
    from jukebox_tf.vqvae.task import VQVAETask, load_vqvae_run

    audio_dir = os.path.join(args.out, "audio")
    dataset_dir = os.path.join(args.out, "dataset")
    vqvae_dir = os.path.join(args.out, "vqvae")
    recon_dir = os.path.join(args.out, "reconstructions")
    codes_dir = os.path.join(args.out, "codes")

    print(f"[1/5] synthesizing the demo corpus into {audio_dir}")
    make_demo_data.make(args, audio_dir)
    print(f"[2/5] ingesting it into {dataset_dir}")
    manifest = ingest(audio_dir, dataset_dir,
                      IngestConfig(sample_rate=args.sample_rate, chunk_seconds=10.0))
    print(format_summary(manifest, dataset_dir))
    picture = os.path.join(args.out, "dataset_overview.png")
    save_spectrograms_png(picture, first_chunk_per_artist(dataset_dir), manifest["sample_rate"])

    print(f"[3/5] training the tiny VQ-VAE for {args.vqvae_steps} steps into {vqvae_dir}")
    task = VQVAETask(get_preset("tiny", sample_rate=args.sample_rate), dataset_dir, 4)
    train(task, TrainConfig(steps=args.vqvae_steps, global_batch_size=4, learning_rate=1e-3,
                            warmup_steps=20, checkpoint_every=200, media_every=100),
          vqvae_dir, resume=os.path.isdir(os.path.join(vqvae_dir, "checkpoints")))

    print(f"[4/5] reconstructing a demo track from each level into {recon_dir}")
    model = load_vqvae_run(vqvae_dir)
    track = sorted(glob.glob(os.path.join(audio_dir, "*", "*.*")))[0]
    for level in range(model.config.levels):
        result = reconstruct_file(model, track, level,
                                  os.path.join(recon_dir, f"level{level}.wav"))
        print(f"  level {level} (hop {model.config.hop_lengths[level]}): spectral convergence "
              f"{result['spectral_convergence_db']:.1f} dB -> {result['wav']}")

    print(f"[5/5] pre-encoding the dataset into codes in {codes_dir}")
    codes = encode_dataset(model, dataset_dir, codes_dir, source_run=vqvae_dir)
    print(f"  {codes['chunks']} chunks, tokens per level {codes['tokens']}")

    print(f"\ndemo finished:\n"
          f"  audio:           {audio_dir} (metadata.csv beside it)\n"
          f"  dataset:         {dataset_dir} (dataset.json: counts, vocabularies, rejects)\n"
          f"  dataset picture: {picture}\n"
          f"  VQ-VAE run:      {vqvae_dir} (tensorboard --logdir {vqvae_dir}/tensorboard)\n"
          f"  reconstructions: {recon_dir} (level*.wav with before/after level*.png)\n"
          f"  codes:           {codes_dir} (codes.json)")
    return 0
