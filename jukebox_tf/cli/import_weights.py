"""`jukebox-tf import-weights`: the released Jukebox models -> run directories."""

from __future__ import annotations

MODELS = ("vqvae", "upsamplers", "5b", "5b_lyrics", "1b_lyrics")  # released.configs.MODELS


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "import-weights", help="import OpenAI's or Hugging Face's released Jukebox checkpoints",
        description="Convert released Jukebox checkpoints into jukebox-tf run directories "
        "under --out (vqvae, upsampler_0, upsampler_1, prior_<model>), which sample, export, "
        "serve, generate, reconstruct and encode load like runs trained here. --format openai "
        "takes OpenAI's files (5b/vqvae.pth.tar, 5b/prior_level_{0,1}.pth.tar, "
        "<model>/prior_level_2.pth.tar); --format hf a transformers save_pretrained folder "
        "(a whole JukeboxModel, or one JukeboxVQVAE or JukeboxPrior). Reading needs no torch. "
        "Everything is checked before anything is written.")
    p.add_argument("sources", nargs="+", metavar="SRC", help="checkpoint files or folders")
    p.add_argument("--format", required=True, choices=("openai", "hf"))
    p.add_argument("--model", required=True, choices=MODELS,
                   help="what to import: the VQ-VAE, the two upsamplers, or a top-level prior "
                        "(with a whole JukeboxModel save, the VQ-VAE and upsamplers in it too)")
    p.add_argument("--out", required=True, metavar="RUNS_DIR", help="folder for the runs")
    p.add_argument("--vocab", nargs="+", default=[], metavar="FILE",
                   help="the artist and genre names of the label ids: the original's "
                        "jukebox/data/ids/v2_artist_ids.txt, v2_genre_ids.txt (5b, 5b_lyrics, "
                        "upsamplers), v3_*.txt (1b_lyrics), or Hugging Face's artists.json "
                        "and genres.json")
    p.set_defaults(func=run)


def run(args) -> int:
    from jukebox_tf.released.importer import import_weights

    import_weights(args.format, args.model, args.sources, args.out, args.vocab)
    return 0
