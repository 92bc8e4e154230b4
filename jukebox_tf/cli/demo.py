"""`jukebox-tf demo --out DIR`: the main job end to end on the built-in demo data."""

from __future__ import annotations

import glob
import os

from jukebox_tf.cli import make_demo_data


def register(subparsers) -> None:
    p = subparsers.add_parser("demo", help="run the whole job on synthesized demo data",
                              description="Synthesize the demo corpus, ingest it, train the "
                              "tiny VQ-VAE on it, reconstruct a track from every level, "
                              "pre-encode the dataset into codes, train a tiny top-level prior "
                              "and upsamplers on the codes and sample a few seconds from them.")
    p.add_argument("--out", default="demo_out", help="output folder (default demo_out)")
    make_demo_data.add_demo_options(p)
    p.add_argument("--sample-rate", type=int, default=22050)
    p.add_argument("--vqvae-steps", type=int, default=400, help="tiny VQ-VAE training steps")
    p.add_argument("--prior-steps", type=int, default=600,
                   help="tiny top-level prior training steps (default 600)")
    p.add_argument("--upsampler-steps", type=int, default=400,
                   help="training steps of each tiny upsampler (default 400)")
    p.add_argument("--sample-seconds", type=float, default=3.0,
                   help="seconds of music to sample at the end (default 3)")
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


def first_labelled_track(audio_dir: str) -> tuple[str, str]:
    """(artist, genre) of the first track in the corpus' metadata.csv."""
    import csv

    from jukebox_tf.audio.demo_data import METADATA_NAME

    with open(os.path.join(audio_dir, METADATA_NAME), newline="", encoding="utf-8") as f:
        row = next(csv.DictReader(f))
    return row["artist"], row["genre"]


def train_prior(codes_dir: str, level: int, preset: str, steps: int, run_dir: str) -> dict:
    """A tiny prior (top level) or upsampler on the demo codes, with artist/genre labels."""
    from jukebox_tf.prior import get_preset
    from jukebox_tf.prior.task import PriorTask
    from jukebox_tf.training import TrainConfig, train

    task = PriorTask.from_codes(get_preset(preset), codes_dir, level, 8)
    return train(task, TrainConfig(steps=steps, global_batch_size=8, learning_rate=2e-3,
                                   warmup_steps=min(20, steps // 10), checkpoint_every=steps,
                                   media_every=max(steps // 2, 1)),
                 run_dir, resume=os.path.isdir(os.path.join(run_dir, "checkpoints")))


def export_demo_models(vqvae_dir: str, top_dir: str, upsampler_dirs, models_dir: str) -> str:
    """`jukebox-tf export` of the demo runs into MODELS_DIR (a new version); its path."""
    import argparse
    import contextlib
    import io

    from jukebox_tf.cli import export as export_cmd

    parser = argparse.ArgumentParser(prog="jukebox-tf")
    export_cmd.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["export", "--vqvae", vqvae_dir, "--prior", top_dir,
                              "--upsamplers", *upsampler_dirs, "--out", models_dir, "--quiet"])
    export_cmd.check_args(args)
    with contextlib.redirect_stderr(io.StringIO()):
        return export_cmd.export_runs(args, export_cmd.load_runs(args)).path


def generate_through_server(out_dir: str, models_dir: str, artist: str, genre: str,
                            seconds: float, seed: int, wav_path: str) -> str:
    """Starts the local TF-Serving-compatible server on free ports, runs `jukebox-tf
    generate`'s steps through gRPC, writes WAV_PATH and its PNG, stops the server; the PNG."""
    import argparse

    import portpicker

    from jukebox_tf.cli import generate
    from serving import client
    from serving.options import ServerOptions
    from serving.server import ModelServer
    from serving.toy_model import write_model_config

    config = write_model_config(os.path.join(out_dir, "models.config"), "jukebox",
                                os.path.abspath(models_dir))
    options = ServerOptions(port=portpicker.pick_unused_port(), rest_port=0, grace_seconds=2.0)
    with ModelServer(config, options) as server:
        client.wait_until_available(server.target, "jukebox", timeout=600)
        gen_args = argparse.Namespace(
            server=server.target, model="jukebox", version=None, artist=artist, genre=[genre],
            lyrics="", seconds=seconds, total_seconds=0.0, out=wav_path, prompt=None,
            prompt_seconds=None, temperature=1.0, top_k=0, top_p=0.0, seed=seed,
            timeout=600.0, quiet=False)
        generate.check_args(gen_args)
        with client.connect(server.target) as channel:
            result = generate.generate_clip(channel, gen_args, generate.Progress(True))
    wav, png = generate.write_outputs(wav_path, result)
    return png


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
    priors_dir = os.path.join(args.out, "priors")
    samples_dir = os.path.join(args.out, "samples")

    print(f"[1/10] synthesizing the demo corpus into {audio_dir}")
    make_demo_data.make(args, audio_dir)
    print(f"[2/10] ingesting it into {dataset_dir}")
    manifest = ingest(audio_dir, dataset_dir,
                      IngestConfig(sample_rate=args.sample_rate, chunk_seconds=10.0))
    print(format_summary(manifest, dataset_dir))
    picture = os.path.join(args.out, "dataset_overview.png")
    save_spectrograms_png(picture, first_chunk_per_artist(dataset_dir), manifest["sample_rate"])

    print(f"[3/10] training the tiny VQ-VAE for {args.vqvae_steps} steps into {vqvae_dir}")
    task = VQVAETask(get_preset("tiny", sample_rate=args.sample_rate), dataset_dir, 4)
    train(task, TrainConfig(steps=args.vqvae_steps, global_batch_size=4, learning_rate=1e-3,
                            warmup_steps=20, checkpoint_every=200, media_every=100),
          vqvae_dir, resume=os.path.isdir(os.path.join(vqvae_dir, "checkpoints")))

    print(f"[4/10] reconstructing a demo track from each level into {recon_dir}")
    model = load_vqvae_run(vqvae_dir)
    track = sorted(glob.glob(os.path.join(audio_dir, "*", "*.*")))[0]
    for level in range(model.config.levels):
        result = reconstruct_file(model, track, level,
                                  os.path.join(recon_dir, f"level{level}.wav"))
        print(f"  level {level} (hop {model.config.hop_lengths[level]}): spectral convergence "
              f"{result['spectral_convergence_db']:.1f} dB -> {result['wav']}")

    print(f"[5/10] pre-encoding the dataset into codes in {codes_dir}")
    codes = encode_dataset(model, dataset_dir, codes_dir, source_run=vqvae_dir)
    print(f"  {codes['chunks']} chunks, tokens per level {codes['tokens']}")

    levels = model.config.levels
    top = levels - 1
    top_dir = os.path.join(priors_dir, f"level{top}")
    print(f"[6/10] training the tiny top-level prior (level {top}) for {args.prior_steps} steps "
          f"into {top_dir}")
    metrics = train_prior(codes_dir, top, "tiny", args.prior_steps, top_dir)
    print(f"  {metrics.get('bits_per_token', float('nan')):.2f} bits/token")
    upsampler_dirs = [os.path.join(priors_dir, f"level{level}") for level in range(top)]
    print(f"[7/10] training tiny upsamplers (levels {top - 1} to 0) for {args.upsampler_steps} "
          f"steps each into {priors_dir}")
    for level in reversed(range(top)):
        metrics = train_prior(codes_dir, level, "tiny_upsampler", args.upsampler_steps,
                              upsampler_dirs[level])
        print(f"  level {level}: {metrics.get('bits_per_token', float('nan')):.2f} bits/token")

    from jukebox_tf.sampling.modes import decode_codes, sample_codes
    from jukebox_tf.sampling.outputs import write_outputs
    from jukebox_tf.sampling.runs import load_hierarchy

    artist, genre = first_labelled_track(audio_dir)
    print(f"[8/10] sampling {args.sample_seconds:g} s ancestrally (artist {artist!r}, genre "
          f"{genre!r}, 2 samples) into {samples_dir}")
    hierarchy = load_hierarchy(vqvae_dir, top_dir, upsampler_dirs)
    artist_id, genre_ids, warnings = hierarchy.label_ids(artist, [genre])
    for warning in warnings:
        print(f"  warning: {warning}")
    sampled = sample_codes("ancestral", hierarchy.vqvae, hierarchy.priors,
                           seconds=args.sample_seconds, n_samples=2, artist_id=artist_id,
                           genre_ids=genre_ids, seed=args.seed)
    settings = {"mode": "ancestral", "seconds": args.sample_seconds, "samples": 2,
                "artist": f"{artist} (id {artist_id})", "genre": f"{genre} (ids {genre_ids})",
                "seed": args.seed, "vqvae": vqvae_dir, "priors": priors_dir}
    paths = write_outputs(samples_dir, sampled, decode_codes(hierarchy.vqvae, sampled),
                          hierarchy.vqvae.config.sample_rate, settings)

    models_dir = os.path.join(args.out, "models", "jukebox")
    print(f"[9/10] exporting the demo models as SavedModels into {models_dir}")
    export_path = export_demo_models(vqvae_dir, top_dir, upsampler_dirs, models_dir)
    print(f"  {export_path}")
    served_wav = os.path.join(args.out, "served", "clip.wav")
    print(f"[10/10] serving them (TF Serving gRPC API on a free local port) and generating "
          f"{args.sample_seconds:g} s through gRPC into {served_wav}")
    served_png = generate_through_server(args.out, models_dir, artist, genre,
                                         args.sample_seconds, args.seed, served_wav)

    print(f"\ndemo finished:\n"
          f"  audio:           {audio_dir} (metadata.csv beside it)\n"
          f"  dataset:         {dataset_dir} (dataset.json: counts, vocabularies, rejects)\n"
          f"  dataset picture: {picture}\n"
          f"  VQ-VAE run:      {vqvae_dir} (tensorboard --logdir {vqvae_dir}/tensorboard)\n"
          f"  reconstructions: {recon_dir} (level*.wav with before/after level*.png)\n"
          f"  codes:           {codes_dir} (codes.json)\n"
          f"  priors:          {priors_dir} (level{top}: top-level prior, level0..{top - 1}: "
          f"upsamplers)\n"
          f"  samples:         {samples_dir} (level_<l>/sample_<i>.wav, spectrograms.png, "
          f"codes.npz)\n"
          f"  SavedModels:     {models_dir} (jukebox-tf serve --model-config ...)\n"
          f"  served clip:     {served_wav} ({os.path.basename(served_png)} beside it)\n"
          f"  listen:          {os.path.abspath(paths['html'])}")
    return 0
