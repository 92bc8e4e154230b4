"""The jukebox-tf configuration of a released model, from what its checkpoint says about it.

OpenAI's files carry their hyperparameters (`hps`, the original's hparams.py names); Hugging
Face's carry a config.json (transformers' JukeboxVQVAEConfig / JukeboxPriorConfig names, its
prior levels counted from the top). Either overrides the `paper*` preset of the model kind
field by field, so a file with other sizes (the tests' small ones) imports as what it is, and a
file without a config imports as the released model. Fields that only matter for training
from scratch (dropouts, initialisation) keep the preset's values.
"""

from __future__ import annotations

import dataclasses

from jukebox_tf.errors import JukeboxError
from jukebox_tf.prior.config import PriorConfig, get_preset as prior_preset
from jukebox_tf.vqvae.config import VQVAEConfig, get_preset as vqvae_preset

# What `import-weights --model` names: the kinds of top-level prior, and their presets.
TOP_MODELS = {"5b": "paper_top", "5b_lyrics": "paper_top_lyrics", "1b_lyrics": "paper_1b_lyrics"}
UPSAMPLER_PRESETS = {0: "paper_upsampler", 1: "paper_upsampler_level_1"}
MODELS = ("vqvae", "upsamplers", *TOP_MODELS)

# transformers' attention_pattern names -> the original's attn_order numbers
HF_ATTENTION = {"full_dense_attention": 0, "raw_column_previous_row_attention": 2,
                "large_separated_enc_dec_w_lyrics": 10, "enc_dec_with_lyrics": 12}

_NO_LYRICS = dict(lyrics=False, single_enc_dec=False, n_lyric_tokens=0, encoder_dims=0,
                  prime_len=None, alignment_layer=None, alignment_head=0)
_VQVAE_OPENAI = {"levels": "levels", "l_bins": "l_bins", "emb_width": "emb_width",
                 "width": "width", "depth": "depth", "m_conv": "m_conv",
                 "dilation_growth_rate": "dilation_growth_rate",
                 "dilation_cycle": "dilation_cycle", "multipliers": "hvqvae_multipliers",
                 "downs_t": "downs_t", "strides_t": "strides_t", "sample_rate": "sr"}
_VQVAE_HF = {"levels": "levels", "l_bins": "nb_discrete_codes", "emb_width": "embed_dim",
             "width": "res_conv_width", "depth": "res_conv_depth",
             "m_conv": "res_convolution_multiplier",
             "dilation_growth_rate": "res_dilation_growth_rate",
             "dilation_cycle": "res_dilation_cycle", "multipliers": "multipliers",
             "downs_t": "res_downs_t", "strides_t": "res_strides_t",
             "channels": "conv_input_shape", "sample_rate": "sampling_rate"}


def _picked(source: dict, names: dict) -> dict:
    """{our field: source[their name]} for the names the source has (None kept out)."""
    out = {}
    for ours, theirs in names.items():
        value = source.get(theirs)
        if value is not None:
            out[ours] = tuple(value) if isinstance(value, list) else value
    return out


def vqvae_config(source: dict | None, names: str) -> VQVAEConfig:
    """The VQ-VAE of a checkpoint whose config is `source` (None: the released one); `names`
    is "openai" or "hf"."""
    fields = _picked(source or {}, _VQVAE_OPENAI if names == "openai" else _VQVAE_HF)
    preset = vqvae_preset("paper")
    top_hop = 1
    for s, d in zip(fields.get("strides_t", preset.strides_t), fields.get("downs_t",
                                                                          preset.downs_t)):
        top_hop *= s ** d
    fields["sample_length"] = -(-preset.sample_length // top_hop) * top_hop
    return _replace(preset, fields, "VQ-VAE")


def prior_kind(config: PriorConfig) -> str:
    """'upsampler', or the TOP_MODELS kind whose layout `config` has."""
    if config.is_upsampler:
        return "upsampler"
    if config.single_enc_dec:
        return "1b_lyrics"
    return "5b_lyrics" if config.lyrics else "5b"


def openai_prior_config(hps: dict | None, preset: str) -> PriorConfig:
    """The prior of an OpenAI checkpoint with hyperparameters `hps` (None: `preset` as is)."""
    if not hps:
        return prior_preset(preset)
    fields = _picked(hps, {
        "n_ctx": "n_ctx", "l_bins": "l_bins", "width": "prior_width", "depth": "prior_depth",
        "heads": "heads", "blocks": "blocks", "attn_order": "attn_order",
        "attn_mult": "m_attn", "mlp_mult": "m_mlp", "merged_decoder": "merged_decoder",
        "level": "level", "levels": "levels", "labels": "labels", "t_bins": "t_bins",
        "max_genre_words": "max_bow_genre_size", "sample_rate": "sr",
        "min_duration": "min_duration", "max_duration": "max_duration"})
    if hps.get("y_bins"):
        fields["genre_bins"], fields["artist_bins"] = map(int, hps["y_bins"])
    level, levels = fields.get("level", 2), fields.get("levels", 3)
    fields.update(_NO_LYRICS)  # unless the file says otherwise
    if hps.get("single_enc_dec"):
        fields.update(lyrics=True, single_enc_dec=True, n_lyric_tokens=hps["n_tokens"],
                      prime_len=hps["n_tokens"], **_picked(hps, {
                          "n_vocab": "n_vocab", "lyric_loss_fraction": "prime_loss_fraction"}))
    elif hps.get("use_tokens") and hps.get("n_tokens"):
        fields.update(lyrics=True, encoder_dims=hps["n_tokens"], **_picked(hps, {
            "n_lyric_tokens": "n_tokens", "n_vocab": "n_vocab", "lyric_width": "prime_width",
            "lyric_depth": "prime_depth", "lyric_heads": "prime_heads",
            "lyric_blocks": "prime_blocks", "lyric_attn_order": "prime_attn_order",
            "lyric_loss_fraction": "prime_loss_fraction"}))
    if level < levels - 1:
        fields.update(_picked(hps, {
            "cond_width": "cond_width", "cond_depth": "cond_depth", "cond_m_conv": "cond_m_conv",
            "cond_dilation_growth_rate": "cond_dilation_growth_rate",
            "cond_dilation_cycle": "cond_dilation_cycle"}))
        fields["cond_res_scale"] = bool(hps.get("cond_res_scale"))
        if hps.get("downs_t") and hps.get("strides_t"):
            fields["cond_down_t"] = int(hps["downs_t"][level + 1])
            fields["cond_stride_t"] = int(hps["strides_t"][level + 1])
    return _with_alignment(_replace(prior_preset(preset), fields, "prior"), hps)


def hf_prior_config(source: dict | None, preset: str, shared: dict | None = None) -> PriorConfig:
    """The prior of a transformers JukeboxPriorConfig dict (None: `preset` as is). `shared`:
    the whole JukeboxConfig's values, which JukeboxModel imposes on every prior."""
    if not source:
        return prior_preset(preset)
    source = {**source, **{k: v for k, v in (shared or {}).items() if k in (
        "sampling_rate", "timing_dims", "min_duration", "max_duration", "max_nb_genres",
        "metadata_conditioning") and v is not None}}
    hf_level = int(source.get("level", 0))
    level = 2 - hf_level
    fields = _picked(source, {
        "n_ctx": "n_ctx", "l_bins": "music_vocab_size", "width": "hidden_size",
        "depth": "num_layers", "heads": "n_heads", "blocks": "blocks",
        "attn_mult": "attention_multiplier", "mlp_mult": "mlp_multiplier",
        "merged_decoder": "merged_decoder", "labels": "metadata_conditioning",
        "max_genre_words": "max_nb_genres", "t_bins": "timing_dims",
        "sample_rate": "sampling_rate", "min_duration": "min_duration",
        "max_duration": "max_duration"})
    fields["level"] = level
    if source.get("attention_pattern") is not None:
        fields["attn_order"] = _attention(source["attention_pattern"])
    if source.get("metadata_dims"):
        fields["genre_bins"], fields["artist_bins"] = map(int, source["metadata_dims"])
    n_tokens = int(source.get("nb_relevant_lyric_tokens") or 0)
    fields.update(_NO_LYRICS)  # unless the file says otherwise
    if source.get("is_encoder_decoder") and n_tokens:
        fields.update(lyrics=True, single_enc_dec=True, n_lyric_tokens=n_tokens,
                      prime_len=n_tokens, **_picked(source, {
                          "n_vocab": "lyric_vocab_size",
                          "lyric_loss_fraction": "encoder_loss_fraction"}))
    elif n_tokens:
        encoder = source.get("encoder_config") or {}
        fields.update(lyrics=True, n_lyric_tokens=n_tokens, encoder_dims=n_tokens,
                      **_picked(source, {"n_vocab": "lyric_vocab_size",
                                         "lyric_loss_fraction": "encoder_loss_fraction"}),
                      **_picked(encoder, {"lyric_width": "hidden_size",
                                          "lyric_depth": "num_layers",
                                          "lyric_heads": "n_heads",
                                          "lyric_blocks": "blocks"}))
        if encoder.get("attention_pattern") is not None:
            fields["lyric_attn_order"] = _attention(encoder["attention_pattern"])
    if level < 2:
        fields.update(_picked(source, {
            "cond_width": "res_conv_width", "cond_depth": "res_conv_depth",
            "cond_m_conv": "res_convolution_multiplier",
            "cond_dilation_growth_rate": "res_dilation_growth_rate",
            "cond_dilation_cycle": "res_dilation_cycle"}))
        fields["cond_res_scale"] = bool(source.get("conv_res_scale"))
        # transformers indexes these by its own level (the same value for both upsamplers).
        for ours, theirs in (("cond_down_t", "res_downs_t"), ("cond_stride_t", "res_strides_t")):
            if source.get(theirs):
                fields[ours] = int(source[theirs][hf_level])
    return _with_alignment(_replace(prior_preset(preset), fields, "prior"), source)


def _with_alignment(config: PriorConfig, source: dict) -> PriorConfig:
    """`config` with the source's alignment_layer / alignment_head where they name a layer
    and head that read the lyrics; else the default (transformers' config carries its class
    defaults, 68 / 2, for the 1B model too, whose layer 68 does not read them)."""
    layer, head = source.get("alignment_layer"), source.get("alignment_head")
    if not config.lyrics or layer is None:
        return config
    try:
        return dataclasses.replace(config, alignment_layer=int(layer),
                                   alignment_head=int(head or 0))
    except ValueError:
        return config


def _attention(pattern) -> int:
    if pattern not in HF_ATTENTION:
        raise JukeboxError(f"config.json: unknown attention_pattern {pattern!r} (known: "
                           f"{', '.join(HF_ATTENTION)})")
    return HF_ATTENTION[pattern]


def _replace(preset, fields: dict, what: str):
    try:
        return dataclasses.replace(preset, **fields)
    except (TypeError, ValueError) as e:
        raise JukeboxError(f"the checkpoint's {what} configuration is not one jukebox-tf can "
                           f"build: {e}") from None
