"""`jukebox-tf demo --out DIR`: the main job end to end on the built-in demo data.

Synthesizes the demo corpus, runs the whole TFX pipeline on it with the `tiny` preset
(pipeline/: ExampleGen -> statistics/schema -> VQ-VAE Trainer -> CodeGen -> prior Trainers ->
export -> Evaluator -> infra validation -> Pusher), serves the pushed model with the local
TF-Serving-compatible server and generates a clip through gRPC. Running it again reuses the
pipeline's cached outputs.
"""

from __future__ import annotations

import json
import os

from jukebox_tf.cli import make_demo_data


def register(subparsers) -> None:
    p = subparsers.add_parser("demo", help="run the whole job on synthesized demo data",
                              description=__doc__.split("\n\n")[1].replace("\n", " "))
    p.add_argument("--out", default="demo_out", help="output folder (default demo_out)")
    make_demo_data.add_demo_options(p)
    p.add_argument("--sample-rate", type=int, default=22050)
    p.add_argument("--vqvae-steps", type=int, default=400, help="tiny VQ-VAE training steps")
    p.add_argument("--prior-steps", type=int, default=600,
                   help="tiny top-level prior training steps (default 600)")
    p.add_argument("--upsampler-steps", type=int, default=400,
                   help="training steps of each tiny upsampler (default 400)")
    p.add_argument("--sample-seconds", type=float, default=3.0,
                   help="seconds of music to generate through the server (default 3)")
    p.add_argument("--beam-arg", action="append", default=[], metavar="ARG",
                   help="a Beam pipeline option for the pipeline's Beam components")
    p.set_defaults(func=run)


def first_labelled_track(audio_dir: str) -> tuple[str, str]:
    """(artist, genre) of the first track in the corpus' metadata.csv."""
    import csv

    from jukebox_tf.audio.demo_data import METADATA_NAME

    with open(os.path.join(audio_dir, METADATA_NAME), newline="", encoding="utf-8") as f:
        row = next(csv.DictReader(f))
    return row["artist"], row["genre"]


def generate_through_server(out_dir: str, models_dir: str, artist: str, genre: str,
                            seconds: float, seed: int, served_dir: str) -> dict:
    """Starts the local TF-Serving-compatible server on free ports, runs `jukebox-tf
    generate`'s steps through gRPC, stops the server, and writes SERVED_DIR/clip.wav, its PNG
    and an index.html with a player: {"wav", "png", "html"}."""
    import numpy as np
    import portpicker

    from jukebox_tf.cli import generate
    from jukebox_tf.sampling.outputs import write_outputs
    from serving import client
    from serving.options import ServerOptions
    from serving.server import ModelServer
    from serving.toy_model import write_model_config

    wav_path = os.path.join(served_dir, "clip.wav")
    config = write_model_config(os.path.join(out_dir, "models.config"), "jukebox",
                                os.path.abspath(models_dir))
    options = ServerOptions(port=portpicker.pick_unused_port(), rest_port=0, grace_seconds=2.0)
    with ModelServer(config, options) as server:
        client.wait_until_available(server.target, "jukebox", timeout=600)
        request = generate.GenerateRequest(server=server.target, model="jukebox",
                                           artist=artist, genre=(genre,), seconds=seconds,
                                           out=wav_path, seed=seed)
        generate.check_args(request)
        with client.connect(server.target) as channel:
            result = generate.generate_clip(channel, request, generate.Progress(True))
    wav, png = generate.write_outputs(wav_path, result)
    audio = np.asarray(result["audio"], np.float32)
    audio = audio[None, :, None] if audio.ndim == 1 else audio[None]
    level = result["level"]
    page = write_outputs(served_dir, {level: result["codes"][level]}, {level: audio},
                         int(result["sample_rate"]),
                         {"served by": "jukebox-tf serve (TF Serving gRPC API)", "artist": artist,
                          "genre": genre, "seconds": seconds, "seed": seed,
                          "models": os.path.abspath(models_dir)})
    return {"wav": wav, "png": png, "html": page["html"]}


def _read_json(path: str):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def run(args) -> int:
    from jukebox_tf.errors import JukeboxError
    from jukebox_tf.export.versions import existing_versions
    from pipeline import local_runner
    from pipeline.cli import format_summary
    from pipeline.configs import get_config

    audio_dir = os.path.join(args.out, "audio")
    root = os.path.join(args.out, "pipeline")
    models_dir = os.path.join(args.out, "models", "jukebox")
    served_dir = os.path.join(args.out, "served")

    settings = {k: getattr(args, k) for k in ("seed", "artists", "tracks_per_artist",
                                              "track_seconds")}
    stamp = os.path.join(audio_dir, ".demo-settings.json")  # hidden: ingest skips it
    if _read_json(stamp) == settings:
        # Same files, same mtimes: the pipeline's second run reuses its cached outputs.
        print(f"[1/3] reusing the demo corpus in {audio_dir}")
    else:
        print(f"[1/3] synthesizing the demo corpus into {audio_dir}")
        make_demo_data.make(args, audio_dir)
        with open(stamp, "w") as f:
            json.dump(settings, f)
    config = get_config("tiny", sample_rate=args.sample_rate, vqvae_steps=args.vqvae_steps,
                        prior_steps=args.prior_steps, upsampler_steps=args.upsampler_steps)
    print(f"[2/3] running the TFX pipeline (tiny preset) with root {root}; it pushes blessed "
          f"models to {models_dir}")
    local_runner.run(audio_dir, root, config, serving_model_dir=models_dir,
                     beam_pipeline_args=args.beam_arg)
    summary = format_summary(root, models_dir)
    print(summary)
    if not existing_versions(models_dir):
        raise JukeboxError(f"the pipeline pushed no model to {models_dir} (not blessed: see "
                           f"the evaluation above); train longer, e.g. --vqvae-steps 800")

    artist, genre = first_labelled_track(audio_dir)
    print(f"[3/3] serving {models_dir} (TF Serving gRPC API on a free local port) and "
          f"generating {args.sample_seconds:g} s (artist {artist!r}, genre {genre!r}) through "
          f"gRPC into {served_dir}")
    paths = generate_through_server(args.out, models_dir, artist, genre, args.sample_seconds,
                                    args.seed, served_dir)
    print(f"\ndemo finished:\n"
          f"  audio:        {audio_dir} (metadata.csv beside it)\n"
          f"  pipeline:     {os.path.abspath(root)} (every component's outputs, "
          f"metadata.sqlite)\n"
          f"  TensorBoard:  tensorboard --logdir {os.path.abspath(root)}\n"
          f"  SavedModels:  {models_dir} (jukebox-tf serve --model-config ...)\n"
          f"  served clip:  {paths['wav']}\n"
          f"  listen:       {os.path.abspath(paths['html'])}")
    return 0
