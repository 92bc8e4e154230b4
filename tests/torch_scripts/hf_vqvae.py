"""Writes a transformers JukeboxVQVAE at the released configuration with random weights, and
what it computes, for tests/test_import_vqvae.py (run with the PyTorch reference venv).

    python hf_vqvae.py OUT_DIR

OUT_DIR/model/: save_pretrained (config.json, pytorch_model.bin); OUT_DIR/model_st/: the same
weights as model.safetensors; OUT_DIR/reference.npz: audio [B, T, 1], per level the encoder's
output (latents_l*), the codes and the audio decoded from them. Weights are drawn at a scale
where the outputs are of order one, and each codebook from the encoder's outputs on music-like audio
(hf_layouts.randomize_vqvae), so a wrong import cannot pass on near-zero numbers."""

import os
import sys

import numpy as np
import torch
from transformers import JukeboxVQVAE, JukeboxVQVAEConfig

from hf_layouts import music, randomize_vqvae

torch.manual_seed(0)
torch.set_num_threads(2)
out = sys.argv[1]

model = JukeboxVQVAE(JukeboxVQVAEConfig()).eval()  # the defaults are the released VQ-VAE
randomize_vqvae(model)
with torch.no_grad():
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
