"""Writes a transformers JukeboxPrior of one released layout with random weights, and what it
computes, for tests/test_import_priors.py (run with the PyTorch reference venv).

    python hf_prior.py SPEC_JSON OUT_DIR

SPEC: {"layout": "upsampler" | "5b" | "5b_lyrics" | "1b_lyrics", "level": 0 | 1 (upsamplers),
"width", "depth", "heads", "n_ctx", "blocks", "artist_bins", "genre_bins", "cond_width",
"cond_depth", "n_lyric_tokens", "lyric_width", "lyric_depth", "lyric_heads", "lyric_blocks",
"sample": bool}.
The configuration is the released model's but for these sizes (mask on, merged_decoder as
released: hf_reference notes). OUT_DIR/model/: save_pretrained; OUT_DIR/reference.npz: inputs
(codes, labels [B, 4 + G], upper_codes, lyrics) and the teacher-forced logits, bits per token
(and the lyric encoder's), and with "sample" greedy tokens of two windows (the second primed by
the first, at the original's hop) with their inputs. For 1b_lyrics (one transformer over the
lyric window then the music, 79 characters then the codes), `logits` are the music positions'
over the codes and `sequence_logits` the whole sequence's over the whole vocabulary.
"""

import json
import math
import os
import sys

import numpy as np
import torch
from transformers import JukeboxPrior, JukeboxPriorConfig
from transformers.utils import logging

logging.set_verbosity_error()
torch.manual_seed(0)
torch.set_num_threads(2)
spec, out = json.loads(sys.argv[1]), sys.argv[2]
layout = spec["layout"]
hf_level = 2 - spec["level"] if layout == "upsampler" else 0
lyrics = layout == "5b_lyrics"
single = layout == "1b_lyrics"
genres = 1 if single else 5
chars = 79 if single else 80
config = dict(
    level=hf_level, hidden_size=spec["width"], num_layers=spec["depth"], n_heads=spec["heads"],
    n_ctx=spec["n_ctx"], blocks=spec["blocks"], mask=True, is_encoder_decoder=single,
    merged_decoder=layout in ("5b", "5b_lyrics"),
    metadata_dims=[spec["genre_bins"], spec["artist_bins"]], max_nb_genres=genres,
    timing_dims=64 if single else 128, max_duration=600.0,
    min_duration={"5b": 60.0, "5b_lyrics": 23.8, "1b_lyrics": 17.84}.get(layout, 0.0),
    attention_pattern={"5b_lyrics": "large_separated_enc_dec_w_lyrics",
                       "1b_lyrics": "enc_dec_with_lyrics"}.get(
                           layout, "raw_column_previous_row_attention"),
    nb_relevant_lyric_tokens=spec.get("n_lyric_tokens", 0))
if single:
    config.update(lyric_vocab_size=chars)
if layout == "upsampler":
    config.update(res_conv_width=spec["cond_width"], res_conv_depth=spec["cond_depth"],
                  res_dilation_cycle=8, res_dilation_growth_rate=3,
                  conv_res_scale=spec["level"] == 1)
if lyrics:
    config.update(lyric_vocab_size=80, encoder_config=dict(
        hidden_size=spec["lyric_width"], num_layers=spec["lyric_depth"],
        n_heads=spec["lyric_heads"], attention_pattern="raw_column_previous_row_attention",
        blocks=spec["lyric_blocks"], mask=True, nb_relevant_lyric_tokens=spec["n_lyric_tokens"],
        metadata_conditioning=False, is_encoder_decoder=False, merged_decoder=False,
        lyric_vocab_size=80))
prior = JukeboxPrior(JukeboxPriorConfig(**config), level=hf_level).eval()

# Weights at a scale where activations and logits are of order one (the port's own
# initialisation, std 0.02 x init_scale, would leave them near zero).
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
        elif name.endswith((".weight",)) and ("lm_head" in name or "fc_proj_out" in name):
            p.copy_(torch.randn(p.shape) / math.sqrt(p.shape[1]))  # nn.Linear [out, in]
        elif "embed" in name or "emb" in name or "start_token" in name:
            p.copy_(torch.randn(p.shape) / math.sqrt(p.shape[-1]))
        else:  # JukeboxConv1D [in, out]
            p.copy_(torch.randn(p.shape) / math.sqrt(p.shape[0]))
    if layout == "upsampler":  # tied: the output layer is the token embedding
        assert prior.prior.fc_proj_out.weight is prior.prior.embed_tokens.weight
prior.save_pretrained(os.path.join(out, "model"), safe_serialization=False)

B, n_ctx = 2, spec["n_ctx"]
rng = np.random.RandomState(1)
raw_to_tokens = {0: 8, 1: 32, 2: 128}[spec.get("level", 2)]
total_length = int(200 * 44100)
artists = [3, spec["artist_bins"] - 1]
genre_ids = [[1], [4]] if single else [[1, 2, -1, -1, -1], [4, -1, -1, -1, -1]]
full_lyrics = rng.randint(1, chars, 3000)  # one song's lyrics for every row (see below)


def labels(start):
    """[B, 4 + G] rows as the original builds them for the window at token `start`."""
    return np.array([[total_length, start * raw_to_tokens, n_ctx * raw_to_tokens, a, *g]
                     for a, g in zip(artists, genre_ids)], np.int64)


def lyric_window(start):
    # The original's linear alignment (labels.py get_relevant_lyric_tokens), in float64.
    n = spec["n_lyric_tokens"]
    offset, duration = start * raw_to_tokens, n_ctx * raw_to_tokens
    mid = int(len(full_lyrics) * (offset + duration / 2.0) / total_length)
    mid = min(max(mid, n // 2), len(full_lyrics) - n // 2)
    return np.tile(full_lyrics[mid - n // 2:mid + n // 2], (B, 1))


def metadata(start):
    rows = labels(start)
    if lyrics or single:
        rows = np.concatenate([rows, lyric_window(start)], axis=1)
    return torch.from_numpy(rows)


def upper(start, codes_above):
    return [torch.from_numpy(codes_above[:, start // 4:(start + n_ctx) // 4])] \
        if layout == "upsampler" else []


def logits_of(music, conds, meta):
    if single:  # the whole sequence's logits over the whole vocabulary
        with torch.no_grad():
            return prior.forward_tokens(music_tokens=music, music_tokens_conds=conds,
                                        metadata=meta, get_preds=True)[1]["preds"], None
    with torch.no_grad():
        audio_cond, meta_cond, lyric_tokens = prior.get_cond(conds, meta)
        enc = prior.get_encoder_states(lyric_tokens)
        _, preds = prior.prior(music, audio_cond, meta_cond, enc, get_preds=True)
        lyric_logits = prior.encoder.lm_head(enc) if lyrics else None
    return preds, lyric_logits


def bits(logits, target):
    return float(torch.nn.functional.cross_entropy(
        logits.reshape(-1, logits.shape[-1]), target.reshape(-1)) / math.log(2))


codes = rng.randint(0, 2048, (B, n_ctx))
upper_all = rng.randint(0, 2048, (B, (n_ctx + n_ctx // 2) // 4 + 1))
meta = metadata(0)
logits, lyric_logits = logits_of(torch.from_numpy(codes), upper(0, upper_all), meta)
result = dict(codes=codes, labels=labels(0), upper_codes=upper_all, full_lyrics=full_lyrics,
              total_length=total_length)
if single:
    n_lyr = spec["n_lyric_tokens"]
    window = meta[:, -n_lyr:]
    result.update(logits=logits[:, n_lyr:, chars:].numpy(), sequence_logits=logits.numpy(),
                  lyrics=window.numpy(), lyric_bits_per_token=bits(logits[:, :n_lyr], window),
                  bits_per_token=bits(logits[:, n_lyr:], torch.from_numpy(codes) + chars))
else:
    result.update(logits=logits.numpy(), bits_per_token=bits(logits, torch.from_numpy(codes)))
if lyrics:
    result.update(lyrics=meta[:, -spec["n_lyric_tokens"]:].numpy(),
                  lyric_bits_per_token=bits(lyric_logits, meta[:, -spec["n_lyric_tokens"]:]))
if spec.get("sample"):
    hop = int({True: 0.125, False: 0.5}[layout != "upsampler"] * n_ctx)
    with torch.no_grad():
        first = prior.sample(B, music_tokens_conds=upper(0, upper_all), metadata=metadata(0),
                             top_k=1, sample_tokens=n_ctx)
        second = prior.sample(B, music_tokens=first[:, hop:],
                              music_tokens_conds=upper(hop, upper_all), metadata=metadata(hop),
                              top_k=1, sample_tokens=n_ctx, chunk_size=32)
    result.update(sampled=torch.cat([first, second[:, n_ctx - hop:]], 1).numpy(), hop=hop)
np.savez(os.path.join(out, "reference.npz"), **result)
print("ok", {k: getattr(v, "shape", v) for k, v in result.items() if k != "full_lyrics"},
      "logit std", float(logits.std()))
