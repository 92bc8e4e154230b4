"""The reference side of benchmarks/released_models.py (run with the PyTorch reference venv):
writes a transformers JukeboxPrior of one released layout with random weights, its logits on
given inputs, and times its own greedy sampling on the best device torch has.

    python hf_sample_bench.py SPEC_JSON INPUTS_NPZ OUT_DIR

SPEC: hf_prior.py's layout fields ("layout": "upsampler" | "1b_lyrics", "level", "width",
"depth", "heads", "n_ctx", "blocks", "artist_bins", "genre_bins", "cond_width", "cond_depth",
"n_lyric_tokens"), and "tokens" (new tokens per sampling call), "repeats" (timed calls after
one warm-up), "device" ("auto": CUDA when torch has it, else "cpu"), "tf32" (allow TF32 in
CUDA matrix products and convolutions). INPUTS_NPZ: codes [B, n_ctx], labels [B, 4 + G] of the
window at token 0, upper_codes [B, n_ctx / 4] (upsamplers), full_lyrics [L] (1b_lyrics: the
window's lyric tokens are chosen by the original's linear alignment), total_length.

OUT_DIR/model/: save_pretrained (one pytorch_model.bin). OUT_DIR/reference.npz: logits (the
music positions over the codes), for 1b_lyrics sequence_logits (the lyric prefix and the music,
over the whole vocabulary) and lyrics (the window's lyric tokens), bits_per_token, and sampled
[B, tokens] (greedy: top_k=1). OUT_DIR/reference.json: device, versions, parameters, the
sampling times and peak memory while sampling.
"""

import json
import math
import os
import re
import statistics
import sys
import time

import numpy as np
import torch
import transformers
from transformers import JukeboxPrior, JukeboxPriorConfig
from transformers.utils import logging

import hf_layouts
from hf_layouts import characters, prior_config, randomize

logging.set_verbosity_error()
torch.manual_seed(0)
spec = json.loads(sys.argv[1])
inputs = dict(np.load(sys.argv[2]))
out = sys.argv[3]
if spec.get("threads"):
    torch.set_num_threads(int(spec["threads"]))
device = torch.device("cuda" if spec.get("device", "auto") == "auto"
                      and torch.cuda.is_available() else "cpu")
cuda = device.type == "cuda"
if cuda:
    # Set both ways: torch's own defaults differ (TF32 off in products, on in cuDNN convs).
    torch.backends.cuda.matmul.allow_tf32 = bool(spec.get("tf32"))
    torch.backends.cudnn.allow_tf32 = bool(spec.get("tf32"))

layout = spec["layout"]
if layout not in ("upsampler", "1b_lyrics"):
    raise SystemExit(f"layout {layout!r}: this script knows upsampler and 1b_lyrics")
single = layout == "1b_lyrics"
chars = characters(layout)
start = time.perf_counter()
config, hf_level = prior_config(spec)
prior = JukeboxPrior(JukeboxPriorConfig(**config), level=hf_level).eval()
randomize(prior)
prior.save_pretrained(os.path.join(out, "model"), safe_serialization=False)
params = sum(p.numel() for p in prior.parameters())
made_s = time.perf_counter() - start
prior = prior.to(device)

n_ctx = spec["n_ctx"]
codes = torch.from_numpy(inputs["codes"]).long().to(device)
labels = inputs["labels"].astype(np.int64)
B = len(labels)


def lyric_window():
    """The window at token 0's lyric tokens, as hf_prior.py."""
    return hf_layouts.lyric_window(inputs["full_lyrics"], spec["n_lyric_tokens"],
                                   int(labels[0, 1]), int(labels[0, 2]),
                                   int(inputs["total_length"]), B)


rows = np.concatenate([labels, lyric_window()], axis=1) if single else labels
metadata = torch.from_numpy(rows).to(device)
conds = [] if single else [torch.from_numpy(inputs["upper_codes"][:, :n_ctx // 4]).long()
                           .to(device)]


def bits(logits, target):
    return float(torch.nn.functional.cross_entropy(
        logits.reshape(-1, logits.shape[-1]), target.reshape(-1)) / math.log(2))


with torch.no_grad():
    if single:
        logits = prior.forward_tokens(music_tokens=codes, music_tokens_conds=conds,
                                      metadata=metadata, get_preds=True)[1]["preds"]
    else:
        audio_cond, meta_cond, _ = prior.get_cond(conds, metadata)
        logits = prior.prior(codes, audio_cond, meta_cond, None, get_preds=True)[1]
result = {}
if single:
    n_lyr = spec["n_lyric_tokens"]
    result.update(logits=logits[:, n_lyr:, chars:].float().cpu().numpy(),
                  sequence_logits=logits.float().cpu().numpy(), lyrics=rows[:, -n_lyr:],
                  bits_per_token=bits(logits[:, n_lyr:], codes + chars))
else:
    result.update(logits=logits.float().cpu().numpy(), bits_per_token=bits(logits, codes))
del logits


def sync():
    if cuda:
        torch.cuda.synchronize()


def vm_hwm_mb():
    with open("/proc/self/status") as f:
        return int(re.search(r"VmHWM:\s+(\d+)", f.read()).group(1)) / 1024


def reset_peak():
    """Starts a new high-water mark (CUDA allocator; on the CPU, VmHWM: writing 5 to
    clear_refs sets it to the current RSS), so the peak is this phase's alone."""
    if cuda:
        torch.cuda.reset_peak_memory_stats(device)
        return True
    try:  # the heap freed so far back to the system first, as released_models.py does
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def peak_mb():
    return torch.cuda.max_memory_allocated(device) / 2 ** 20 if cuda else vm_hwm_mb()


def sample(n=spec["tokens"]):
    """One greedy sampling call, as the original samples a window from an empty prime (for
    1b_lyrics: the lyric prefix is primed, then the music tokens drawn)."""
    with torch.no_grad():
        tokens = prior.sample(B, music_tokens_conds=conds, metadata=metadata, top_k=1,
                              sample_tokens=n)
    sync()
    return tokens


def current_mb():
    if cuda:
        return torch.cuda.memory_allocated(device) / 2 ** 20
    with open("/proc/self/status") as f:
        return int(re.search(r"VmRSS:\s+(\d+)", f.read()).group(1)) / 1024


sync()
peak_reset = reset_peak()
start_mb = current_mb()
begin = time.perf_counter()
first_tokens = sample()
first_s = time.perf_counter() - begin
times, same = [], True
for _ in range(spec["repeats"]):
    begin = time.perf_counter()
    tokens = sample()
    times.append(time.perf_counter() - begin)
    same &= bool(torch.equal(tokens, first_tokens))
peak = peak_mb()
# Calls drawing one token cost what a call costs besides its token loop: the difference
# gives the loop's own speed.
ones = []
for _ in range(max(spec["repeats"], 1)):
    begin = time.perf_counter()
    sample(1)
    ones.append(time.perf_counter() - begin)
one = statistics.median(ones)
sampled = first_tokens.cpu().numpy()
result.update(sampled=sampled)
np.savez(os.path.join(out, "reference.npz"), **result)
median = statistics.median(times) if times else first_s
info = {
    "device": torch.cuda.get_device_name(device) if cuda else "cpu",
    "device_type": device.type, "torch": torch.__version__,
    "transformers": transformers.__version__, "threads": torch.get_num_threads(),
    "tf32": bool(spec.get("tf32")) and cuda, "params": params, "make_checkpoint_s": made_s,
    "sample_first_call_s": first_s, "sample_s_median": median, "sample_s_all": times,
    "tokens_per_s": B * sampled.shape[1] / median, "sampled_shape": list(sampled.shape),
    "one_token_call_s": one,
    "loop_ms_per_token": (median - one) / (spec["tokens"] - 1) * 1e3
    if spec["tokens"] > 1 else None,
    "loop_tokens_per_s": B * (spec["tokens"] - 1) / (median - one)
    if spec["tokens"] > 1 and median > one else None,
    "deterministic": same, "memory_at_start_mb": start_mb, "peak_memory_mb": peak,
    "peak_memory_kind": (
        "torch.cuda.max_memory_allocated" if cuda else
        "VmHWM after malloc_trim" + (" since sampling began" if peak_reset
                                      else " of the whole process")),
    "bits_per_token": result["bits_per_token"], "logit_std": float(result["logits"].std()),
}
with open(os.path.join(out, "reference.json"), "w") as f:
    json.dump(info, f, indent=2)
print("ok", json.dumps({k: info[k] for k in ("device", "tokens_per_s", "peak_memory_mb")}))
