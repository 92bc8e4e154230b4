"""What hf_prior.py and hf_sample_bench.py share (PyTorch reference venv): a transformers
JukeboxPriorConfig of one released layout but for its sizes, the weights drawn at a scale where
outputs are of order one, and the original's linear lyric alignment.

SPEC: {"layout": "upsampler" | "5b" | "5b_lyrics" | "1b_lyrics", "level": 0 | 1 (upsamplers),
"width", "depth", "heads", "n_ctx", "blocks", "artist_bins", "genre_bins", "cond_width",
"cond_depth", "n_lyric_tokens", "lyric_width", "lyric_depth", "lyric_heads", "lyric_blocks"}.
"""

import math

import numpy as np
import torch

LAYOUTS = ("upsampler", "5b", "5b_lyrics", "1b_lyrics")


def characters(layout: str) -> int:
    """The lyric vocabulary: v3's 79 characters for 1b_lyrics, v2's 80 otherwise."""
    return 79 if layout == "1b_lyrics" else 80


def prior_config(spec: dict) -> tuple[dict, int]:
    """JukeboxPriorConfig's keywords and transformers' level (0 is the top prior) for SPEC:
    the released model's configuration (mask on, merged_decoder as released) but for the
    sizes."""
    layout = spec["layout"]
    if layout not in LAYOUTS:
        raise SystemExit(f"layout {layout!r}: one of {', '.join(LAYOUTS)}")
    hf_level = 2 - spec["level"] if layout == "upsampler" else 0
    single = layout == "1b_lyrics"
    config = dict(
        level=hf_level, hidden_size=spec["width"], num_layers=spec["depth"],
        n_heads=spec["heads"], n_ctx=spec["n_ctx"], blocks=spec["blocks"], mask=True,
        is_encoder_decoder=single, merged_decoder=layout in ("5b", "5b_lyrics"),
        metadata_dims=[spec["genre_bins"], spec["artist_bins"]],
        max_nb_genres=1 if single else 5, timing_dims=64 if single else 128,
        max_duration=600.0,
        min_duration={"5b": 60.0, "5b_lyrics": 23.8, "1b_lyrics": 17.84}.get(layout, 0.0),
        attention_pattern={"5b_lyrics": "large_separated_enc_dec_w_lyrics",
                           "1b_lyrics": "enc_dec_with_lyrics"}.get(
                               layout, "raw_column_previous_row_attention"),
        nb_relevant_lyric_tokens=spec.get("n_lyric_tokens", 0))
    if single:
        config.update(lyric_vocab_size=characters(layout))
    if layout == "upsampler":
        config.update(res_conv_width=spec["cond_width"], res_conv_depth=spec["cond_depth"],
                      res_dilation_cycle=8, res_dilation_growth_rate=3,
                      conv_res_scale=spec["level"] == 1)
    if layout == "5b_lyrics":
        chars = characters(layout)
        config.update(lyric_vocab_size=chars, encoder_config=dict(
            hidden_size=spec["lyric_width"], num_layers=spec["lyric_depth"],
            n_heads=spec["lyric_heads"], attention_pattern="raw_column_previous_row_attention",
            blocks=spec["lyric_blocks"], mask=True,
            nb_relevant_lyric_tokens=spec["n_lyric_tokens"], metadata_conditioning=False,
            is_encoder_decoder=False, merged_decoder=False, lyric_vocab_size=chars))
    return config, hf_level


def randomize(prior: torch.nn.Module) -> None:
    """Weights at a scale where activations and logits are of order one (std 1/sqrt(fan_in)):
    the port's own initialisation (std 0.02 x init_scale) leaves them near zero, where a wrong
    import could hide."""
    with torch.no_grad():
        for name, p in prior.named_parameters():
            if "layer_norm" in name:
                p.copy_((1.0 if name.endswith("weight") else 0.0) + 0.1 * torch.randn(p.shape))
            elif p.ndim == 1:
                p.copy_(0.1 * torch.randn(p.shape))
            elif p.ndim == 3:  # Conv1d [out, in, k] / ConvTranspose1d [in, out, k]
                fan_in = (p.shape[1] if "upsample_block" not in name or "resnet" in name
                          else p.shape[0] / 2) * p.shape[2]
                p.copy_(torch.randn(p.shape) / math.sqrt(fan_in))
            elif name.endswith(".weight") and ("lm_head" in name or "fc_proj_out" in name):
                p.copy_(torch.randn(p.shape) / math.sqrt(p.shape[1]))  # nn.Linear [out, in]
            elif "embed" in name or "emb" in name or "start_token" in name:
                p.copy_(torch.randn(p.shape) / math.sqrt(p.shape[-1]))
            else:  # JukeboxConv1D [in, out]
                p.copy_(torch.randn(p.shape) / math.sqrt(p.shape[0]))


def lyric_window(full_lyrics: np.ndarray, n: int, offset: int, duration: int,
                 total_length: int, rows: int) -> np.ndarray:
    """[rows, n]: the n lyric tokens of the window at `offset` samples lasting `duration`, by
    the original's linear alignment (labels.py get_relevant_lyric_tokens), in float64."""
    mid = int(len(full_lyrics) * (offset + duration / 2.0) / total_length)
    mid = min(max(mid, n // 2), len(full_lyrics) - n // 2)
    return np.tile(full_lyrics[mid - n // 2:mid + n // 2], (rows, 1))


def music(seconds: float, seed: int, rate: int = 44100) -> np.ndarray:
    """[seconds * rate] float32: decaying harmonic notes over a little noise, peak 0.5."""
    rng = np.random.RandomState(seed)
    t = np.arange(int(seconds * rate)) / rate
    x = 0.01 * rng.randn(len(t))
    for _ in range(12):
        start, freq = rng.uniform(0, seconds * 0.9), rng.uniform(80, 1200)
        env = np.where(t >= start, np.exp(-(t - start) * rng.uniform(1, 5)), 0.0)
        x += env * sum(np.sin(2 * np.pi * freq * k * t) / k for k in (1, 2, 3, 4))
    return (0.5 * x / np.abs(x).max()).astype(np.float32)


def randomize_vqvae(model: torch.nn.Module) -> None:
    """A JukeboxVQVAE's weights at std 1/sqrt(fan_in), and each level's codebook drawn from
    its encoder's outputs on music-like audio."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("weight"):
                fan_in = p.shape[1] * p.shape[2]
                p.copy_(torch.randn(p.shape) / fan_in ** 0.5)
            else:
                p.copy_(0.1 * torch.randn(p.shape))
        train = torch.from_numpy(np.stack([music(8.0, s) for s in (1, 2)]))[..., None]
        for level, encoder in enumerate(model.encoders):
            latents = encoder(train.permute(0, 2, 1))[-1]  # [B, emb, T']
            vectors = latents.permute(0, 2, 1).reshape(-1, latents.shape[1])
            pick = torch.randperm(vectors.shape[0])[:2048]
            # Jittered by about the distance between neighbouring outputs: the outputs of music
            # lie close together (at level 1 about 1% of their norm apart), so codes drawn as
            # they are would leave many nearest-code choices that float32 cannot resolve.
            spread = (vectors[pick[:256], None] - vectors[None, pick[256:512]]).norm(dim=-1)
            jitter = spread.min(dim=1).values.median() / vectors.shape[1] ** 0.5
            model.bottleneck.level_blocks[level].codebook.copy_(
                vectors[pick] + jitter * torch.randn(2048, vectors.shape[1]))
