"""Writes a transformers JukeboxVQVAE at the released configuration with random weights, and
what it computes, for tests/test_import_vqvae.py (run with the PyTorch reference venv).

    python hf_vqvae.py OUT_DIR

OUT_DIR/model/: save_pretrained (config.json, pytorch_model.bin); OUT_DIR/model_st/: the same
weights as model.safetensors; OUT_DIR/reference.npz: audio [B, T, 1], per level the encoder's
output (latents_l*), the codes and the audio decoded from them. Weights are drawn at a scale
where the outputs are of order one (std 1/sqrt(fan_in)), and each codebook from the encoder's
outputs on music-like audio, so a wrong import cannot pass on near-zero numbers."""

import os
import sys

import numpy as np
import torch
from transformers import JukeboxVQVAE, JukeboxVQVAEConfig

torch.manual_seed(0)
torch.set_num_threads(2)
out = sys.argv[1]
rate = 44100


def music(seconds, seed):
    rng = np.random.RandomState(seed)
    t = np.arange(int(seconds * rate)) / rate
    x = 0.01 * rng.randn(len(t))
    for _ in range(12):
        start, freq = rng.uniform(0, seconds * 0.9), rng.uniform(80, 1200)
        env = np.where(t >= start, np.exp(-(t - start) * rng.uniform(1, 5)), 0.0)
        x += env * sum(np.sin(2 * np.pi * freq * k * t) / k for k in (1, 2, 3, 4))
    return (0.5 * x / np.abs(x).max()).astype(np.float32)


model = JukeboxVQVAE(JukeboxVQVAEConfig()).eval()  # the defaults are the released VQ-VAE
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
        # lie close together (at level 1 about 1% of their norm apart), so codes drawn as they
        # are would leave many nearest-code choices that float32 cannot resolve.
        spread = (vectors[pick[:256], None] - vectors[None, pick[256:512]]).norm(dim=-1)
        jitter = spread.min(dim=1).values.median() / vectors.shape[1] ** 0.5
        model.bottleneck.level_blocks[level].codebook.copy_(
            vectors[pick] + jitter * torch.randn(2048, vectors.shape[1]))
    # A whole number of top-level codes (128 samples), as jukebox-tf pads its inputs to.
    audio = torch.from_numpy(np.stack([music(2.0, s)[:688 * 128] for s in (3, 4)]))[..., None]
    codes = model.encode(audio)
    latents = [encoder(audio.permute(0, 2, 1))[-1].permute(0, 2, 1) for encoder in model.encoders]
    decoded = [model.decode([c], start_level=level) for level, c in enumerate(codes)]
model.save_pretrained(os.path.join(out, "model"), safe_serialization=False)
model.save_pretrained(os.path.join(out, "model_st"), safe_serialization=True)
np.savez(os.path.join(out, "reference.npz"), audio=audio.numpy(),
         **{f"codes_l{i}": c.numpy() for i, c in enumerate(codes)},
         **{f"latents_l{i}": z.numpy() for i, z in enumerate(latents)},
         **{f"decoded_l{i}": d.numpy() for i, d in enumerate(decoded)})
print("ok", [tuple(c.shape) for c in codes], [float(d.abs().max()) for d in decoded])
