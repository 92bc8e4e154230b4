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

import hf_layouts
from hf_layouts import characters, prior_config, randomize

logging.set_verbosity_error()
torch.manual_seed(0)
torch.set_num_threads(2)
spec, out = json.loads(sys.argv[1]), sys.argv[2]
layout = spec["layout"]
lyrics = layout == "5b_lyrics"
single = layout == "1b_lyrics"
genres = 1 if single else 5
chars = characters(layout)
config, hf_level = prior_config(spec)
prior = JukeboxPrior(JukeboxPriorConfig(**config), level=hf_level).eval()
randomize(prior)
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
    return hf_layouts.lyric_window(full_lyrics, spec["n_lyric_tokens"], start * raw_to_tokens,
                                   n_ctx * raw_to_tokens, total_length, B)


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
