"""What checkpoint files hold: the parts of a released model (the VQ-VAE, the priors by level),
each with its tensors (lazy) and its configuration, in OpenAI's or Hugging Face's format.

    parts = read_parts("openai", ["5b/vqvae.pth.tar", "5b/prior_level_0.pth.tar"])
    parts[0].kind, parts[0].level        # "vqvae", None / "prior", 0 (the original's levels)
    parts[1].tensor(entry)               # the TensorRef of a weight_map Entry, or None

OpenAI: a torch.save file per part, its dict's `model` the state dict (keys perhaps prefixed
`module.`), `hps` its hyperparameters. Hugging Face: a folder (or its weight files) of
`save_pretrained`: config.json and pytorch_model*.bin / model*.safetensors (sharded with an
index .json), keys of a whole JukeboxModel prefixed `vqvae.` and `priors.N.` (N = 0 is the top
prior), of one JukeboxVQVAE or JukeboxPrior not prefixed.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
from typing import Sequence

from jukebox_tf.errors import JukeboxError
from jukebox_tf.released import tensor_files
from jukebox_tf.released.weight_map import Entry, hf_name

FORMATS = ("openai", "hf")
_WEIGHT_FILE = re.compile(r"(pytorch_model.*\.bin|model.*\.safetensors|.*\.pth(\.tar)?|.*\.pt)$")


@dataclasses.dataclass
class Part:
    kind: str  # "vqvae" or "prior"
    level: int | None  # a prior's level in the original's numbering (2 = top)
    tensors: dict  # key (the format's own names, prefix removed) -> TensorRef
    names: str  # "openai" or "hf"
    config: dict | None  # hps (openai), config.json's part (hf); None when the file has none
    origin: str  # the file(s) it was read from, for messages
    shared: dict | None = None  # hf: the whole JukeboxConfig's values

    def key(self, entry: Entry) -> str | None:
        """The key of `entry`'s weight in this part, None when absent."""
        for openai in (entry.openai, *entry.alternatives):
            key = openai if self.names == "openai" else hf_name(openai)
            if key in self.tensors:
                return key
        return None

    @property
    def what(self) -> str:
        return "the VQ-VAE" if self.kind == "vqvae" else (
            "the top-level prior" if self.level == 2 else f"the level-{self.level} upsampler")


def read_parts(fmt: str, paths: Sequence[str]) -> list[Part]:
    """The parts `paths` hold; TensorFileError / JukeboxError for what cannot be read (a
    truncated file among them fails here, before anything is converted)."""
    if fmt not in FORMATS:
        raise JukeboxError(f"--format {fmt!r}: choose from {', '.join(FORMATS)}")
    if not paths:
        raise JukeboxError("no checkpoint given")
    for path in paths:
        if not os.path.exists(path):
            raise JukeboxError(f"{path}: no such file or folder")
    parts = [p for path in paths for p in (_openai_parts(path) if fmt == "openai"
                                           else _hf_parts(path))]
    seen = {}
    for part in parts:
        ident = (part.kind, part.level)
        if ident in seen:
            raise JukeboxError(f"{part.origin} and {seen[ident]} both hold {part.what}")
        seen[ident] = part.origin
    return parts


# -- OpenAI ---------------------------------------------------------------------------------

def _openai_parts(path: str) -> list[Part]:
    if os.path.isdir(path):
        raise JukeboxError(f"{path}: a folder; --format openai takes the .pth.tar files")
    tree = tensor_files.load_torch_file(path)
    state = tree.get("model") if isinstance(tree, dict) else None
    if not isinstance(state, dict) or not state:
        raise JukeboxError(f"{path}: a torch file, but not an OpenAI Jukebox checkpoint (no "
                           f"'model' state dict in it)")
    tensors = {k[7:] if k.startswith("module.") else k: v for k, v in state.items()
               if isinstance(v, tensor_files.TensorRef)}
    hps = tree.get("hps")
    hps = dict(hps) if isinstance(hps, dict) else _stub_dict(hps)
    if any(k.startswith(("encoders.", "decoders.", "bottleneck.")) for k in tensors):
        return [Part("vqvae", None, tensors, "openai", hps, path)]
    if not any(k.startswith("prior.") for k in tensors):
        raise JukeboxError(f"{path}: a torch checkpoint, but neither a Jukebox VQ-VAE nor a "
                           f"prior (first keys: {', '.join(list(tensors)[:3])})")
    level = hps.get("level") if hps else None
    if level is None:
        m = re.search(r"prior_level_(\d)", os.path.basename(path))
        level = int(m[1]) if m else (0 if any(k.startswith("conditioner_blocks.")
                                              for k in tensors) else 2)
        if m is None and level == 0:
            raise JukeboxError(f"{path}: an upsampler, but neither its hps nor its file name "
                               f"(prior_level_N.pth.tar) says which level")
    return [Part("prior", int(level), tensors, "openai", hps, path)]


def _stub_dict(obj) -> dict | None:
    """hps pickled as the original's Hyperparams (a dict subclass) arrives as a stub."""
    items = getattr(obj, "dict_items", None)
    return dict(items) if items else None


# -- Hugging Face ---------------------------------------------------------------------------

def _hf_parts(path: str) -> list[Part]:
    folder, files = (path, None) if os.path.isdir(path) else (os.path.dirname(path), [path])
    config_path = os.path.join(folder, "config.json")
    if not os.path.exists(config_path):
        raise JukeboxError(f"{path}: no config.json beside the weights (a save_pretrained "
                           f"folder of transformers' Jukebox has one)")
    try:
        with open(config_path) as f:
            config = json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise JukeboxError(f"{config_path}: not valid JSON ({e})") from None
    tensors = {}
    for file in files or _hf_weight_files(folder):
        loaded = (tensor_files.load_safetensors(file) if file.endswith(".safetensors")
                  else tensor_files.load_torch_file(file))
        if not isinstance(loaded, dict) or not all(
                isinstance(v, tensor_files.TensorRef) for v in loaded.values()):
            raise JukeboxError(f"{file}: not a state dict of tensors")
        tensors.update(loaded)
    model_type = config.get("model_type")
    if model_type == "jukebox_vqvae":
        return [Part("vqvae", None, tensors, "hf", config, folder)]
    if model_type == "jukebox_prior":
        return [Part("prior", 2 - int(config.get("level", 0)), tensors, "hf", config, folder)]
    if model_type != "jukebox":
        raise JukeboxError(f"{config_path}: model_type {model_type!r} is not transformers' "
                           f"Jukebox (jukebox, jukebox_vqvae or jukebox_prior)")
    priors = config.get("prior_config_list") or [config.get(f"prior_{i}") for i in range(3)]
    shared = {k: v for k, v in config.items() if not isinstance(v, (dict, list))}
    parts = []
    if any(k.startswith("vqvae.") for k in tensors):
        parts.append(Part("vqvae", None, _strip(tensors, "vqvae."), "hf",
                          config.get("vqvae_config"), folder, shared))
    for hf_level, prior in enumerate(priors):
        own = _strip(tensors, f"priors.{hf_level}.")
        if own:
            prior = dict(prior or {}, level=hf_level)
            parts.append(Part("prior", 2 - hf_level, own, "hf", prior, folder, shared))
    if not parts:
        raise JukeboxError(f"{folder}: a JukeboxModel config, but no weight named vqvae.* or "
                           f"priors.N.*")
    return parts


def _hf_weight_files(folder: str) -> list[str]:
    for index in ("model.safetensors.index.json", "pytorch_model.bin.index.json"):
        path = os.path.join(folder, index)
        if os.path.exists(path):
            with open(path) as f:
                shards = sorted(set(json.load(f)["weight_map"].values()))
            missing = [s for s in shards if not os.path.exists(os.path.join(folder, s))]
            if missing:
                raise JukeboxError(f"{path} names shard(s) that are missing: "
                                   f"{', '.join(missing)}")
            return [os.path.join(folder, s) for s in shards]
    files = sorted(f for f in os.listdir(folder) if _WEIGHT_FILE.fullmatch(f))
    safetensors = [f for f in files if f.endswith(".safetensors")]
    files = safetensors or files  # both present: the same weights; safetensors reads faster
    if not files:
        raise JukeboxError(f"{folder}: no weights (pytorch_model*.bin or model*.safetensors)")
    return [os.path.join(folder, f) for f in files]


def _strip(tensors: dict, prefix: str) -> dict:
    return {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}
