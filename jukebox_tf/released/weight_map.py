"""Where each variable of a jukebox-tf model comes from in the original's state dict, and in
Hugging Face transformers' renaming of it.

    for entry in weight_map(model):            # model: built VQVAE or prior (a skeleton will do)
        entry.variable                         # the Keras variable
        entry.openai                           # "prior.transformer._attn_mods.3.attn.c_attn.w"
        entry.hf                               # "prior.transformer._attn_mods.3.attn.c_attn.weight"
        entry.convert(array)                   # the original's layout -> ours (float32)

The original's layouts (its code, checked by building it): its transformer `Conv1D.w` is
[n_in, n_out], a Keras kernel as is; `nn.Linear.weight` [out, in] is transposed; `nn.Conv1d`
[out, in, k] and `nn.ConvTranspose1d` [in, out, k] become our [k, in, out] and [k, out, in] by
reversing the axes. A few variables have no source: `fill` says what they are set to
("ones", "zeros", or ("copy", PATH): the converted value of the variable at PATH).
"""

from __future__ import annotations

import dataclasses
import re
import numpy as np

IDENTITY, LINEAR, CONV = "identity", "linear", "conv"


@dataclasses.dataclass(frozen=True)
class Entry:
    variable: object  # keras.Variable of the model
    openai: str | None  # key in the original's state dict (None: derived, see `fill`)
    layout: str = IDENTITY  # IDENTITY, LINEAR or CONV
    alternatives: tuple[str, ...] = ()  # other names the original used for the same weight
    fill: str | tuple | None = None  # for openai=None: "ones", "zeros" or ("copy", PATH)

    @property
    def path(self) -> str:
        """The variable's path below the model ('transformer/block_3/attn/c_attn/kernel')."""
        return self.variable.path.split("/", 1)[1]

    @property
    def shape(self) -> tuple:
        return tuple(self.variable.shape)

    @property
    def _reversed(self) -> bool:
        """Whether the original stores it with its axes reversed (biases are not)."""
        return self.layout in (LINEAR, CONV) and len(self.shape) > 1

    @property
    def source_shape(self) -> tuple:
        """The shape the original stores it in."""
        return self.shape[::-1] if self._reversed else self.shape

    def convert(self, array: np.ndarray) -> np.ndarray:
        if self._reversed:
            array = np.transpose(array)
        return np.ascontiguousarray(array, dtype=np.dtype(self.variable.dtype))


# -- the VQ-VAE -----------------------------------------------------------------------------

def _vqvae_entry(config, variable) -> Entry:
    path = variable.path.split("/", 1)[1]
    m = re.fullmatch(r"encoder_(\d+)/level_(\d+)/(.+)/(kernel|bias)", path)
    if m:
        enc, level, rest, kind = int(m[1]), int(m[2]), m[3], _torch_param(m[4])
        base = f"encoders.{enc}.level_blocks.{level}.model"
        if (d := re.fullmatch(r"down_(\d+)", rest)):
            return Entry(variable, f"{base}.{d[1]}.0.{kind}", CONV)
        if (r := re.fullmatch(r"resnet_(\d+)/block_(\d+)/conv(3|1)", rest)):
            conv = 1 if r[3] == "3" else 3
            return Entry(variable, f"{base}.{r[1]}.1.model.{r[2]}.model.{conv}.{kind}", CONV)
        if rest == "out":
            return Entry(variable, f"{base}.{config.downs_t[level]}.{kind}", CONV)
    m = re.fullmatch(r"decoder_(\d+)/(?:level_(\d+)/)?(.+)/(kernel|bias)", path)
    if m:
        dec, level, rest, kind = int(m[1]), m[2], m[3], _torch_param(m[4])
        if level is None and rest == "out":
            return Entry(variable, f"decoders.{dec}.out.{kind}", CONV)
        depth = config.depth * config.multipliers[dec]
        # Our blocks are named by dilation (block_j: growth**j); the original's decoder lists
        # them in the reversed order it runs them.
        entry = _decoder_block(variable, rest, kind, f"decoders.{dec}.level_blocks.{level}",
                               "model", lambda j: depth - 1 - j)
        if entry:
            return entry
    m = re.fullmatch(r"bottleneck_(\d+)/(\w+)", path)
    if m:
        level, name = int(m[1]), m[2]
        # The original keeps only the codebook; its EMA statistics start as if each code had
        # been seen once (so fine-tuning neither restarts nor re-initialises them at once).
        fills = {"k_sum": ("copy", f"bottleneck_{level}/codebook"), "k_elem": "ones",
                 "initialized": "ones", "updates": "zeros"}
        if name == "codebook":
            return Entry(variable, f"bottleneck.level_blocks.{level}.k")
        if name in fills:
            return Entry(variable, None, fill=fills[name])
    if path == "data_stats":  # loss normalisers, measured on the training data: neutral here
        return Entry(variable, None, fill="ones")
    raise ValueError(f"no source for VQ-VAE variable {path!r}")


# -- the priors -----------------------------------------------------------------------------

_LABELS = {"artist_emb": "y_emb.artist_emb.emb.weight",
           "genre_emb": "y_emb.bow_genre_emb.emb.weight",
           "total_length/embeddings": "y_emb.total_length_emb.emb.weight",
           "absolute_pos/embeddings": "y_emb.absolute_pos_emb.emb.weight",
           "relative_pos/embeddings": "y_emb.relative_pos_emb.emb.weight"}


def _transformer_entry(variable, rest: str, prefix: str) -> Entry | None:
    """Embeddings and blocks of one ConditionalAutoregressive2D (`prefix`: 'prior' or
    'prime_prior')."""
    embedding = {"embedding/token_emb": f"{prefix}.x_emb.weight",
                 "embedding/pos_emb": f"{prefix}.pos_emb.pos_emb",
                 "embedding/start_token": f"{prefix}.start_token"}
    if rest in embedding:
        return Entry(variable, embedding[rest])
    m = re.fullmatch(r"transformer/block_(\d+)/(ln_[01])/(gamma|beta)", rest)
    if m:
        return Entry(variable, f"{prefix}.transformer._attn_mods.{m[1]}.{m[2]}."
                               f"{'weight' if m[3] == 'gamma' else 'bias'}")
    m = re.fullmatch(r"transformer/block_(\d+)/(attn/c_attn|attn/c_enc_kv|attn/c_proj|mlp/c_fc|"
                     r"mlp/c_proj)/(kernel|bias)", rest)
    if m:
        return Entry(variable, f"{prefix}.transformer._attn_mods.{m[1]}."
                               f"{m[2].replace('/', '.')}.{'w' if m[3] == 'kernel' else 'b'}")
    return None


def _prior_entry(config, variable) -> Entry:
    path = variable.path.split("/", 1)[1]
    if path.startswith("lyric_encoder/"):
        rest = path[len("lyric_encoder/"):]
        named = {"proj/kernel": ("prime_state_proj.w", IDENTITY),
                 "proj/bias": ("prime_state_proj.b", IDENTITY),
                 "ln/gamma": ("prime_state_ln.weight", IDENTITY),
                 "ln/beta": ("prime_state_ln.bias", IDENTITY),
                 "x_out/kernel": ("prime_x_out.weight", LINEAR)}
        if rest in named:
            return Entry(variable, *named[rest])
        entry = _transformer_entry(variable, rest, "prime_prior")
        if entry:
            return entry
    elif path.startswith("label_conditioner/"):
        rest = path[len("label_conditioner/"):]
        if rest in _LABELS:
            return Entry(variable, _LABELS[rest])
    elif path.startswith("upper_conditioner/"):
        entry = _conditioner_entry(variable, path[len("upper_conditioner/"):])
        if entry:
            return entry
    elif path == "x_out/kernel":
        return Entry(variable, "prior.x_out.weight", LINEAR)
    else:
        entry = _transformer_entry(variable, path, "prior")
        if entry:
            return entry
    raise ValueError(f"no source for prior variable {path!r}")


def _conditioner_entry(variable, rest: str) -> Entry | None:
    base = "conditioner_blocks.0"
    if rest == "x_emb":
        return Entry(variable, f"{base}.x_emb.weight")
    if (m := re.fullmatch(r"ln/(gamma|beta)", rest)):
        return Entry(variable, f"{base}.ln.{'weight' if m[1] == 'gamma' else 'bias'}")
    m = re.fullmatch(r"block/(.+)/(kernel|bias)", rest)
    # make_prior builds these resnets as checkpointable blocks (`.blocks.`) whatever the mode;
    # a model built otherwise names them `.model.`. Their dilations run in order.
    return m and _decoder_block(variable, m[1], _torch_param(m[2]), f"{base}.cond", "blocks",
                                lambda j: j)


def _decoder_block(variable, part: str, kind: str, base: str, resnets: str,
                   position) -> Entry | None:
    """A weight of a DecoderConvBlock (`in`, `resnet_i/block_j/conv3|conv1`, `up_i`) as the
    original's DecoderConvBock under `base` names it; its resnets' blocks are `resnets`
    ('model' or 'blocks'), block j at `position(j)`."""
    if part == "in":
        return Entry(variable, f"{base}.model.0.{kind}", CONV)
    if (u := re.fullmatch(r"up_(\d+)", part)):
        return Entry(variable, f"{base}.model.{int(u[1]) + 1}.1.{kind}", CONV)
    if (r := re.fullmatch(r"resnet_(\d+)/block_(\d+)/conv(3|1)", part)):
        key = (f"{base}.model.{int(r[1]) + 1}.0.{resnets}.{position(int(r[2]))}.model."
               f"{1 if r[3] == '3' else 3}.{kind}")
        other = key.replace(f".{resnets}.", ".blocks." if resnets == "model" else ".model.")
        return Entry(variable, key, CONV, alternatives=(other,))
    return None


def _torch_param(keras_name: str) -> str:
    return "weight" if keras_name == "kernel" else "bias"


def weight_map(model) -> list[Entry]:
    """One Entry per variable of `model` (VQVAE, TopLevelPrior or Upsampler), in
    model.variables order."""
    from jukebox_tf.prior.prior import Prior

    entry = _prior_entry if isinstance(model, Prior) else _vqvae_entry
    return [entry(model.config, v) for v in model.variables]


# -- Hugging Face names ---------------------------------------------------------------------

_HF_BLOCK_RULES = [  # (pattern on the original's key, replacement); the first match applies
    (r"(encoders\.\d+\.level_blocks\.\d+)\.model\.(\d+)\.(\d)\.(bias|weight)",
     lambda m: f"{m[1]}.downsample_block.{2 * int(m[2]) + int(m[3])}.{m[4]}"),
    (r"(encoders\.\d+\.level_blocks\.\d+)\.model\.(\d+)\.(\d)\.model\.(\d+)\.model\.(\d+)\."
     r"(bias|weight)",
     lambda m: f"{m[1]}.downsample_block.{2 * int(m[2]) + int(m[3])}.resnet_block.{m[4]}."
               f"conv1d_{1 if m[5] == '1' else 2}.{m[6]}"),
    (r"(encoders\.\d+\.level_blocks\.\d+)\.model\.\d+\.(bias|weight)",
     lambda m: f"{m[1]}.proj_out.{m[2]}"),
    (r"(decoders\.\d+\.level_blocks\.\d+)\.model\.(\d+)\.(\d)\.(bias|weight)",
     lambda m: f"{m[1]}.upsample_block.{2 * int(m[2]) + int(m[3]) - 2}.{m[4]}"),
    (r"(decoders\.\d+\.level_blocks\.\d+)\.model\.(\d+)\.(\d)\.model\.(\d+)\.model\.(\d+)\."
     r"(bias|weight)",
     lambda m: f"{m[1]}.upsample_block.{2 * int(m[2]) + int(m[3]) - 2}.resnet_block.{m[4]}."
               f"conv1d_{1 if m[5] == '1' else 2}.{m[6]}"),
    (r"(decoders\.\d+\.level_blocks\.\d+)\.model\.\d+\.(bias|weight)",
     lambda m: f"{m[1]}.proj_in.{m[2]}"),
    (r"conditioner_blocks\.\d+\.cond\.model\.(\d+)\.(\d)\.(bias|weight)",
     lambda m: f"conditioner_blocks.upsampler.upsample_block.{2 * int(m[1]) + int(m[2]) - 2}."
               f"{m[3]}"),
    (r"conditioner_blocks\.\d+\.cond\.model\.(\d+)\.(\d)\.(?:model|blocks)\.(\d+)\."
     r"model\.(\d+)\.(bias|weight)",
     lambda m: f"conditioner_blocks.upsampler.upsample_block.{2 * int(m[1]) + int(m[2]) - 2}."
               f"resnet_block.{m[3]}.conv1d_{1 if m[4] == '1' else 2}.{m[5]}"),
    (r"conditioner_blocks\.\d+\.cond\.model\.\d+\.(bias|weight)",
     lambda m: f"conditioner_blocks.upsampler.proj_in.{m[1]}"),
]

# The module names transformers gave the original's (first match wins, in its order).
_HF_RENAMES = [("y_emb.", "metadata_embedding."), ("prime_state_ln", "encoder.final_layer_norm"),
               (".ln", ".layer_norm"), ("_ln", "_layer_norm"),
               ("prime_state_proj", "encoder.proj_in"), ("prime_x_out", "encoder.lm_head"),
               ("prior.x_out", "prior.fc_proj_out"), ("x_emb", "embed_tokens")]


def hf_name(openai: str) -> str:
    """The name transformers' Jukebox port (its convert_jukebox.py, 4.25-4.57) gives the
    original's state dict key `openai` (without the `vqvae.` / `priors.N.` prefix of a whole
    JukeboxModel save)."""
    key = re.sub(r"\.w$", ".weight", re.sub(r"\.b$", ".bias", openai))
    for pattern, replace in _HF_BLOCK_RULES:
        m = re.fullmatch(pattern, key)
        if m:
            key = replace(m)
            break
    key = key.replace("conditioner_blocks.0.", "conditioner_blocks.").replace("prime_prior",
                                                                             "encoder")
    if ".emb." in key and not any(t in key for t in ("total", "absolute", "relative")):
        key = key.replace(".emb.", ".")
    if key.endswith(".k"):
        return key[:-2] + ".codebook"
    for old, new in _HF_RENAMES:
        if old in key:
            return key.replace(old, new)
    return key
