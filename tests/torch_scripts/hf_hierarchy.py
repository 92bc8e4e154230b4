"""Writes a whole transformers JukeboxModel of the released 1b_lyrics hierarchy (the VQ-VAE,
the 1b_lyrics top prior and the two upsamplers) with random weights, as Hugging Face saves
openai/jukebox-1b-lyrics, for benchmarks/released_hierarchy.py (run with the PyTorch reference
venv).

    python hf_hierarchy.py SPEC_JSON OUT_DIR

SPEC: {"priors": [the top's, level 1's, level 0's hf_layouts spec], "max_shard_size": "2GB"}.
The VQ-VAE is the released one (transformers' defaults). OUT_DIR: config.json and the weight
shards (save_pretrained, torch's format); OUT_DIR/reference.json: parameters and seconds.
"""

import json
import os
import sys
import time

import torch
import transformers
from transformers import JukeboxConfig, JukeboxModel
from transformers.utils import logging

from hf_layouts import prior_config, randomize, randomize_vqvae

logging.set_verbosity_error()
torch.manual_seed(0)
spec, out = json.loads(sys.argv[1]), sys.argv[2]
start = time.perf_counter()
configs = [prior_config(s)[0] for s in spec["priors"]]
top = configs[0]
# JukeboxModel gives every prior the top's label and timing fields, as the hub's file does.
config = JukeboxConfig(prior_config_list=configs, nb_priors=len(configs), sampling_rate=44100,
                       timing_dims=top["timing_dims"], min_duration=top["min_duration"],
                       max_duration=top["max_duration"], max_nb_genres=top["max_nb_genres"],
                       metadata_conditioning=True)
model = JukeboxModel(config).eval()
built_s = time.perf_counter() - start
randomize_vqvae(model.vqvae)
for prior in model.priors:
    randomize(prior)
drawn_s = time.perf_counter() - start - built_s
model.save_pretrained(out, safe_serialization=False,
                      max_shard_size=spec.get("max_shard_size", "2GB"))
info = {"params": sum(p.numel() for p in model.parameters()),
        "prior_params": [sum(p.numel() for p in prior.parameters()) for prior in model.priors],
        "build_s": built_s, "randomize_s": drawn_s,
        "save_s": time.perf_counter() - start - built_s - drawn_s,
        "torch": torch.__version__, "transformers": transformers.__version__}
with open(os.path.join(out, "reference.json"), "w") as f:
    json.dump(info, f, indent=2)
print("ok", json.dumps(info))
