"""The reference side of benchmarks/train_vs_reference.py (run with the PyTorch reference venv):
a transformers JukeboxPrior of the same configuration as ours, trained one step at a time on
command, so that the driver can alternate its steps with ours.

    python hf_train_step.py SPEC_JSON

SPEC: {"config": our PriorConfig.to_dict() (a top-level prior with labels, no lyrics), "batch":
an .npz with codes [B, n_ctx] and labels [B, 4 + max_genre_words] (ours: the same window
layout as the reference's metadata), "threads", "params_expected" (our prior's parameter
count; a different count here exits with an error), "clip_norm", "learning_rate", "ema_decay"}.

The step, float32: the teacher-forced loss as JukeboxPrior.forward computes it once the VQ-VAE
has encoded the audio (forward_tokens on the codes and the metadata), backward, clipping by the
global norm, Adam, and the weight EMA with our warm-up (decay min(d, (1 + t) / (10 + t))); a
step whose loss or norm is not finite is skipped, as ours skips it.

Protocol: one JSON line when ready ({"params", "torch", "transformers", "threads"}); then per
line on stdin, "step" runs one step and answers {"step_s": its wall seconds, "loss"}, "quit"
ends. Anything else the libraries print goes to stderr, so stdout carries only the replies.
"""

import json
import os
import sys
import time

import numpy as np
import torch
import transformers
from transformers import JukeboxPrior, JukeboxPriorConfig
from transformers.utils import logging

# Our attn_order numbers that transformers has a pattern for.
PATTERNS = {0: "full_dense_attention", 2: "raw_column_previous_row_attention"}


def hf_config(c: dict) -> JukeboxPriorConfig:
    """transformers' configuration of our PriorConfig fields `c` (its level 0 is the top)."""
    if c["lyrics"] or c["level"] != c["levels"] - 1 or not (c["labels"] and c["timing"]):
        raise SystemExit("hf_train_step.py: only a top-level prior with labels and timing, "
                         "without lyrics, has a reference here")
    if c["attn_order"] not in PATTERNS:
        raise SystemExit(f"hf_train_step.py: attn_order {c['attn_order']!r} has no "
                         f"transformers pattern (one of {sorted(PATTERNS)})")
    return JukeboxPriorConfig(
        level=0, hidden_size=c["width"], num_layers=c["depth"], n_heads=c["heads"],
        n_ctx=c["n_ctx"], blocks=c["blocks"], mask=True, music_vocab_size=c["l_bins"],
        attention_pattern=PATTERNS[c["attn_order"]], attention_multiplier=c["attn_mult"],
        mlp_multiplier=c["mlp_mult"], act_fn=c["afn"], init_scale=c["init_scale"],
        zero_out=c["zero_out"], attn_res_scale=c["res_scale"], attn_dropout=c["attn_dropout"],
        resid_dropout=c["resid_dropout"], emb_dropout=c["emb_dropout"],
        is_encoder_decoder=False, merged_decoder=c["merged_decoder"],
        nb_relevant_lyric_tokens=0, metadata_dims=[c["genre_bins"], c["artist_bins"]],
        max_nb_genres=c["max_genre_words"], timing_dims=c["t_bins"],
        sampling_rate=c["sample_rate"], min_duration=c["min_duration"],
        max_duration=c["max_duration"])


def main() -> int:
    # The replies go to the real stdout; whatever else writes to fd 1 lands on stderr.
    replies = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)
    logging.set_verbosity_error()
    spec = json.loads(sys.argv[1])
    torch.set_num_threads(int(spec["threads"]))
    torch.manual_seed(0)
    prior = JukeboxPrior(hf_config(spec["config"]), level=0).train()
    # A JukeboxPrior made alone leaves its weights as torch.empty left them; JukeboxModel
    # initialises its priors so (std 0.02 x init_scale, as ours).
    prior.apply(prior._init_weights)
    params = list(prior.parameters())  # the tied output layer is the token embedding: once
    count = sum(p.numel() for p in params)
    if count != spec["params_expected"]:
        raise SystemExit(f"hf_train_step.py: the reference has {count:,} parameters, ours "
                         f"{spec['params_expected']:,}: the configurations differ")
    # Without a lyric encoder, forward_tokens' encoder loss reads the missing encoder output's
    # device; the value it stands for is zero (weighted by 0 lyric tokens in the loss anyway).
    prior.get_encoder_loss = lambda states, target: torch.zeros(())
    batch = np.load(spec["batch"])
    codes = torch.from_numpy(batch["codes"]).long()
    metadata = torch.from_numpy(batch["labels"]).long()
    optimizer = torch.optim.Adam(params, lr=spec["learning_rate"], betas=(0.9, 0.999))
    with torch.no_grad():
        shadows = [p.detach().clone() for p in params]
    updates = 0

    def step() -> float:
        nonlocal updates
        optimizer.zero_grad(set_to_none=True)
        loss, _ = prior.forward_tokens(music_tokens=codes, music_tokens_conds=[],
                                       metadata=metadata)
        loss.backward()
        norm = torch.nn.utils.clip_grad_norm_(params, spec["clip_norm"])
        if torch.isfinite(norm) and torch.isfinite(loss):
            optimizer.step()
            updates += 1
            decay = min(spec["ema_decay"], (1.0 + updates) / (10.0 + updates))
            with torch.no_grad():
                torch._foreach_lerp_(shadows, params, 1.0 - decay)
        return float(loss)

    print(json.dumps({"params": count, "torch": torch.__version__,
                      "transformers": transformers.__version__,
                      "threads": torch.get_num_threads()}), file=replies)
    for line in iter(sys.stdin.readline, ""):
        command = line.strip()
        if command == "quit":
            break
        if command != "step":
            raise SystemExit(f"hf_train_step.py: unknown command {command!r}")
        start = time.perf_counter()
        loss = step()
        print(json.dumps({"step_s": time.perf_counter() - start, "loss": loss}), file=replies)
    return 0


if __name__ == "__main__":
    sys.exit(main())
