"""Prior (factorized-attention transformer) hyperparameters as a frozen dataclass, with presets.

Field names follow the original's hparams where they carry over (n_ctx, l_bins, blocks,
attn_order, init_scale, zero_out, res_scale, encoder_dims, prime_len); `width`/`depth` are its
prior_width/prior_depth and `attn_mult`/`mlp_mult` its m_attn/m_mlp.

The second group of fields describes the prior around its transformer (prior.py): which level
it models, its label (artist, genre, timing) conditioning, the lyric encoder of a top prior
(the original's prime_* hparams) and the conditioner of an upsampler on the level above (its
cond_* hparams). `count_prior_params` counts a whole prior without building it.
"""

from __future__ import annotations

import dataclasses
from typing import Sequence, Union

# Attention kinds of one layer (the original's attn_func).
DENSE, ROW, COLUMN, PREV_BLOCK, CROSS, PRIME = 0, 1, 2, 3, 6, 7
ATTN_KINDS = (DENSE, ROW, COLUMN, PREV_BLOCK, CROSS, PRIME)
BLOCKED_KINDS = (ROW, COLUMN, PREV_BLOCK)  # need n_ctx viewed as [blocks, block_ctx]
ACTIVATIONS = ("quick_gelu", "gelu", "relu", "swish")

_LYRIC_SEP = [*[1, 2, 3] * 3, *([1, 2, 3] * 3 + [6]) * 7]  # 79 layers, the 5B lyrics model


def _order_kind(attn_order: int, d: int) -> int:
    """Kind of layer d under one of the original's attn_order numbers (its get_attn_func)."""
    if attn_order == 0:
        return DENSE
    if attn_order == 1:
        return [1, 2][d % 2]
    if attn_order == 2:
        return [1, 2, 3][d % 3]
    if attn_order == 6:
        return [1, 2, 3, 6][d % 4]
    if attn_order == 7:
        return [*[1, 2, 3] * 5, 6][d % 16]
    if attn_order == 8:  # the small separated encoder-decoder lyrics model
        return [1, 2, 3, 1, 2, 3, 1, 2, 3, 6][d % 10]
    if attn_order == 9:
        return [1, 2, 3, 0][d % 4]
    if attn_order == 10:  # the 5B lyrics model
        return _LYRIC_SEP[d % 79]
    if attn_order in (11, 12):  # 12: the 1B single encoder-decoder lyrics model
        lyric = CROSS if attn_order == 11 else PRIME
        return [lyric, lyric, 0][d % 3] if d % 16 == 15 else [1, 2, 3][d % 3]
    raise ValueError(f"unsupported attn_order {attn_order} (choose from 0, 1, 2, 6-12, or give "
                     f"an explicit sequence of kinds from {ATTN_KINDS})")


AttnOrder = Union[int, Sequence[int]]


def attn_kinds(attn_order: AttnOrder, depth: int) -> tuple[int, ...]:
    """The attention kind of each of `depth` layers. attn_order is one of the original's order
    numbers, or an explicit sequence of kinds that is cycled."""
    if isinstance(attn_order, int):
        return tuple(_order_kind(attn_order, d) for d in range(depth))
    cycle = tuple(int(k) for k in attn_order)
    if not cycle or any(k not in ATTN_KINDS for k in cycle):
        raise ValueError(f"attn_order {list(cycle)} must be a non-empty sequence of kinds from "
                         f"{ATTN_KINDS}")
    return tuple(cycle[d % len(cycle)] for d in range(depth))


def prime_attn_len(prime_len: int, blocks: int, n_ctx: int) -> int:
    """Keys visible to prime attention (kind 7). As the original's `_prime_len`, prime_len is
    rounded up past itself to a multiple of `blocks` (not block_ctx): 384 -> 448 for 64 blocks."""
    return min((prime_len // blocks + 1) * blocks, n_ctx)


def count_transformer_params(config: "PriorConfig") -> int:
    """Parameters of `Transformer.from_prior_config(config)`, computed without building it.

    Every kind has the same count: cross-attention splits c_attn [width, 3 n_state] into a
    query projection [width, n_state] and c_enc_kv [width, 2 n_state]."""
    width, n_state, mlp = config.width, config.n_state, config.mlp_width
    attn = (width + 1) * 3 * n_state + (n_state + 1) * width
    return config.depth * (attn + (width + 1) * mlp + (mlp + 1) * width + 4 * width)


@dataclasses.dataclass(frozen=True)
class PriorConfig:
    n_ctx: int = 64  # transformer context (for the 1B lyrics model: lyric prefix + music tokens)
    l_bins: int = 32  # token vocabulary
    width: int = 32
    depth: int = 3
    heads: int = 2
    blocks: int | None = 8  # n_ctx is viewed as [blocks, block_ctx] by the factorized kinds
    attn_order: AttnOrder = 2
    attn_mult: float = 0.25  # attention width = attn_mult * width
    mlp_mult: float = 1.0  # MLP width = mlp_mult * width
    afn: str = "quick_gelu"  # the original priors' MLP activation, x * sigmoid(1.702 x)
    init_scale: float = 1.0  # weights ~ N(0, (0.02 init_scale)^2)
    zero_out: bool = False  # zero-initialise the residual projections
    res_scale: bool = False  # scale each block's residual branch by 1 / depth
    attn_dropout: float = 0.0
    resid_dropout: float = 0.0
    emb_dropout: float = 0.0
    pos_emb: str = "learned"  # a learned [n_ctx, width] position embedding
    recompute: bool = False  # recompute each block's activations in the backward pass
    encoder_dims: int = 0  # length of the encoder output cross-attention (kind 6) reads
    prime_len: int | None = None  # lyric prefix length that prime attention (kind 7) reads

    # -- the prior around the transformer --------------------------------------------------
    level: int = 2  # VQ-VAE level of the codes it models
    levels: int = 3  # VQ-VAE levels: level < levels - 1 is an upsampler (conditioned on level + 1)
    # The original's 5B top priors: an output layer of its own instead of the tied token
    # embedding, and the per-position conditioning added only before the transformer.
    merged_decoder: bool = False
    # Labels (LabelConditioner): artist + genre words form the start token; timing embeddings
    # are added at every position of a top prior. Without labels the start token is learned.
    labels: bool = False
    artist_bins: int = 1  # artist ids, 0 = unknown
    genre_bins: int = 1  # genre word ids, 0 = unknown
    max_genre_words: int = 4  # genre slots of the label tensor (the original: 5)
    timing: bool = True  # timing embeddings (top prior with labels only)
    t_bins: int = 128
    sample_rate: int = 44100  # audio the codes came from: timing ranges are in its samples
    min_duration: float = 0.0  # seconds: the range the total-length embedding is binned over
    max_duration: float = 600.0  # seconds: also the absolute-position range
    # Lyrics (top prior): an encoder transformer over a window of `n_lyric_tokens` characters;
    # the decoder's cross-attention layers (kind 6) read its output (encoder_dims of them).
    # With single_enc_dec (the 1B lyrics model), the characters are instead a token prefix of
    # the window in the one transformer (seq_ctx positions, token_bins tokens: characters, then
    # codes shifted by n_vocab), read by its prime-attention layers (kind 7, prime_len of them).
    lyrics: bool = False
    single_enc_dec: bool = False
    n_lyric_tokens: int = 0
    n_vocab: int = 80  # character vocabulary with padding (lyrics.VOCAB_SIZE)
    lyric_width: int = 32
    lyric_depth: int = 2
    lyric_heads: int = 1
    lyric_blocks: int | None = None
    lyric_attn_order: AttnOrder = 0
    lyric_init_scale: float = 1.0
    lyric_loss_fraction: float = 0.4  # the original's prime_loss_fraction
    # The layer and head whose attention to the lyrics `sample` shows as the lyric alignment
    # (the original's alignment_layer / alignment_head); None: the last layer reading them.
    alignment_layer: int | None = None
    alignment_head: int = 0
    # Upsamplers (UpsamplerConditioner): codes of level + 1, embedded and upsampled by
    # cond_stride_t ** cond_down_t (the hop ratio between the levels) with a dilated stack.
    cond_width: int = 32
    cond_depth: int = 2
    cond_m_conv: float = 1.0
    cond_dilation_growth_rate: int = 3
    cond_dilation_cycle: int | None = 8
    cond_res_scale: bool = False  # the original: True for level 1, False for level 0
    cond_down_t: int = 2
    cond_stride_t: int = 2

    def __post_init__(self):
        for name in ("attn_order", "lyric_attn_order"):
            if isinstance(getattr(self, name), list):
                object.__setattr__(self, name, tuple(getattr(self, name)))
        for name in ("n_ctx", "l_bins", "width", "depth", "heads"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        n_state = self.attn_mult * self.width
        if n_state != int(n_state) or n_state < 1:
            raise ValueError(f"attention width attn_mult * width = {self.attn_mult} * "
                             f"{self.width} must be a positive integer")
        if int(n_state) % self.heads:
            raise ValueError(f"attention width {int(n_state)} (attn_mult * width) is not "
                             f"divisible by heads={self.heads}")
        if self.mlp_mult * self.width != self.mlp_width or self.mlp_width < 1:
            raise ValueError(f"MLP width mlp_mult * width = {self.mlp_mult} * {self.width} "
                             f"must be a positive integer")
        kinds = set(self.attn_kinds)  # validates attn_order
        if self.blocks is not None and (self.blocks < 1 or self.seq_ctx % self.blocks):
            raise ValueError(f"n_ctx={self.seq_ctx} is not divisible by blocks={self.blocks}")
        if self.blocks is None and kinds & {*BLOCKED_KINDS, PRIME}:
            raise ValueError(f"attn_order {self.attn_order} uses factorized or prime attention, "
                             f"which needs `blocks`")
        if CROSS in kinds and self.encoder_dims < 1:
            raise ValueError(f"attn_order {self.attn_order} has cross-attention layers: set "
                             f"encoder_dims to the encoder output length")
        if PRIME in kinds and (self.prime_len is None or not 0 < self.prime_len < self.seq_ctx):
            raise ValueError(f"attn_order {self.attn_order} has prime-attention layers: set "
                             f"prime_len to the prefix length (0 < prime_len < n_ctx)")
        if self.afn not in ACTIVATIONS:
            raise ValueError(f"afn {self.afn!r} is not one of {ACTIVATIONS}")
        if self.pos_emb != "learned":
            raise ValueError(f"pos_emb {self.pos_emb!r}: only 'learned' is implemented")
        for name in ("attn_dropout", "resid_dropout", "emb_dropout"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ValueError(f"{name} must be in [0, 1), got {getattr(self, name)}")
        self._check_conditioning(kinds)

    def _check_conditioning(self, kinds: set):
        if not 0 <= self.level < self.levels:
            raise ValueError(f"level {self.level} is not one of the {self.levels} levels")
        for name in ("artist_bins", "genre_bins", "max_genre_words", "t_bins", "sample_rate"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        if not 0.0 <= self.min_duration < self.max_duration:
            raise ValueError(f"need 0 <= min_duration < max_duration, got "
                             f"{self.min_duration}, {self.max_duration}")
        if self.single_enc_dec and not self.lyrics:
            raise ValueError("single_enc_dec is a way of conditioning on lyrics: set lyrics")
        if self.alignment_layer is not None and (
                not 0 <= self.alignment_layer < self.depth
                or self.attn_kinds[self.alignment_layer] not in self._lyric_reading_kinds):
            raise ValueError(f"alignment_layer {self.alignment_layer} is not a layer that "
                             f"reads the lyrics (those of attention kinds "
                             f"{sorted(self._lyric_reading_kinds)} among {self.depth} layers)")
        if not 0 <= self.alignment_head < self.heads:
            raise ValueError(f"alignment_head {self.alignment_head} is not one of the "
                             f"{self.heads} heads")
        if self.lyrics:
            if self.is_upsampler:
                raise ValueError("lyrics condition the top-level prior only (level = levels - 1)")
            if self.n_lyric_tokens < 1 or self.n_vocab < 2:
                raise ValueError("lyrics need n_lyric_tokens >= 1 and n_vocab >= 2")
            if self.single_enc_dec:
                if CROSS in kinds or self.merged_decoder:
                    raise ValueError("a single encoder-decoder has no cross-attention and ties "
                                     "its output layer to the token embedding")
                if PRIME in kinds and self.prime_len != self.n_lyric_tokens:
                    raise ValueError(f"prime attention reads the lyric prefix: prime_len must "
                                     f"be n_lyric_tokens = {self.n_lyric_tokens}")
                return
            if CROSS not in kinds or self.encoder_dims != self.n_lyric_tokens:
                raise ValueError(f"lyrics need cross-attention layers (kind 6 in attn_order "
                                 f"{self.attn_order}) with encoder_dims = n_lyric_tokens = "
                                 f"{self.n_lyric_tokens}; see with_lyrics()")
            self.lyric_encoder_config  # validates the encoder's own transformer fields
        if self.is_upsampler:
            for name in ("cond_width", "cond_depth", "cond_down_t", "cond_stride_t"):
                if getattr(self, name) < 1:
                    raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
            if self.n_ctx % self.hop_ratio:
                raise ValueError(f"n_ctx={self.n_ctx} is not divisible by the hop ratio "
                                 f"{self.hop_ratio} to the level above")

    @property
    def _lyric_reading_kinds(self) -> set[int]:
        """Attention kinds whose weights over the lyrics can be read off directly."""
        if not self.lyrics:
            return set()
        return {PRIME, DENSE} if self.single_enc_dec else {CROSS}

    @property
    def lyric_alignment(self) -> tuple[int, int] | None:
        """(layer, head) of the lyric alignment, None for priors without a layer for it."""
        if self.alignment_layer is not None:
            return self.alignment_layer, self.alignment_head
        # The last layer of the first kind present: prime attention before dense in a single
        # encoder-decoder (the 1B model's choice, layer 63, is its last prime layer).
        for kind in (CROSS, PRIME, DENSE):
            reading = [d for d, k in enumerate(self.attn_kinds)
                       if k == kind and k in self._lyric_reading_kinds]
            if reading:
                return reading[-1], self.alignment_head
        return None

    @property
    def seq_ctx(self) -> int:
        """The transformer's positions: n_ctx, after the lyric prefix with single_enc_dec."""
        return self.n_ctx + (self.n_lyric_tokens if self.single_enc_dec else 0)

    @property
    def token_bins(self) -> int:
        """The token vocabulary: l_bins codes, after n_vocab characters with single_enc_dec."""
        return self.l_bins + (self.n_vocab if self.single_enc_dec else 0)

    @property
    def block_ctx(self) -> int | None:
        """Positions per block: seq_ctx // blocks (None without blocks)."""
        return None if self.blocks is None else self.seq_ctx // self.blocks

    @property
    def n_state(self) -> int:
        """Attention width (all heads together)."""
        return int(self.attn_mult * self.width)

    @property
    def mlp_width(self) -> int:
        return int(self.mlp_mult * self.width)

    @property
    def attn_kinds(self) -> tuple[int, ...]:
        return attn_kinds(self.attn_order, self.depth)

    @property
    def is_upsampler(self) -> bool:
        """Whether the prior is conditioned on the codes of the level above."""
        return self.level < self.levels - 1

    @property
    def hop_ratio(self) -> int:
        """Tokens of this level per token of the level above."""
        return self.cond_stride_t ** self.cond_down_t

    @property
    def has_timing(self) -> bool:
        """Timing embeddings: top priors with labels (the original's include_time_signal)."""
        return self.labels and self.timing and not self.is_upsampler

    @property
    def label_width(self) -> int:
        """Columns of the label tensor (labels.py): 4 + max_genre_words."""
        return 4 + self.max_genre_words

    @property
    def t_ranges(self) -> tuple:
        """(total length, absolute position, relative position) ranges, in samples."""
        return ((self.min_duration * self.sample_rate, self.max_duration * self.sample_rate),
                (0.0, self.max_duration * self.sample_rate), (0.0, 1.0))

    @property
    def lyric_encoder_config(self) -> "PriorConfig":
        """The lyric encoder's transformer (the original's prime_* hparams)."""
        return PriorConfig(n_ctx=self.n_lyric_tokens, l_bins=self.n_vocab,
                           width=self.lyric_width, depth=self.lyric_depth,
                           heads=self.lyric_heads, blocks=self.lyric_blocks,
                           attn_order=self.lyric_attn_order, init_scale=self.lyric_init_scale,
                           afn=self.afn, recompute=self.recompute)

    def to_dict(self) -> dict:
        values = dataclasses.asdict(self)
        for name in ("attn_order", "lyric_attn_order"):
            if not isinstance(getattr(self, name), int):
                values[name] = list(getattr(self, name))
        return values

    @classmethod
    def from_dict(cls, values: dict) -> "PriorConfig":
        fields = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - fields)
        if unknown:
            raise ValueError(f"unknown prior config field(s): {', '.join(unknown)}")
        return cls(**values)


def count_prior_params(config: "PriorConfig") -> int:
    """Parameters of `build_prior(config)` (prior.py), computed without building it."""
    from jukebox_tf.prior.labels import count_label_conditioner_params
    from jukebox_tf.prior.upsampler_conditioner import count_upsampler_conditioner_params

    width = config.width
    outputs = 2 if config.merged_decoder else 1  # untied output layer or tied to x_emb
    total = (count_transformer_params(config) + outputs * config.token_bins * width
             + config.seq_ctx * width)
    if config.labels:
        total += count_label_conditioner_params(config.artist_bins, config.genre_bins, width,
                                                config.has_timing, config.t_bins)
    else:
        total += width  # the learned start token
    if config.is_upsampler:
        total += count_upsampler_conditioner_params(
            config.l_bins, width, config.cond_down_t, config.cond_stride_t, config.cond_width,
            config.cond_depth, config.cond_m_conv)
    if config.lyrics and not config.single_enc_dec:
        enc = config.lyric_encoder_config
        lyric_width = enc.width
        total += (count_transformer_params(enc)
                  + (enc.l_bins + 1 + enc.n_ctx) * lyric_width  # tokens, start, positions
                  + (lyric_width + 1) * width + 2 * width  # projection to width, LayerNorm
                  + width * enc.l_bins)  # next-character prediction head
    return total


def _lyric_order(depth: int) -> AttnOrder:
    """A lyric model's layer kinds: the original's order 8 (every 10th layer cross-attends)
    when deep enough, else row/column/previous-block layers closed by one cross-attention."""
    if depth >= 10:
        return 8
    if depth < 2:
        raise ValueError("a lyrics prior needs depth >= 2 (self-attention and cross-attention)")
    return tuple([ROW, COLUMN, PREV_BLOCK][d % 3] for d in range(depth - 1)) + (CROSS,)


def with_lyrics(config: PriorConfig, n_tokens: int | None = None, **overrides) -> PriorConfig:
    """`config` with the lyric encoder switched on: `n_tokens` (default config.n_lyric_tokens)
    characters, cross-attention layers added to attn_order when it has none."""
    n_tokens = n_tokens or config.n_lyric_tokens
    order = config.attn_order if CROSS in config.attn_kinds else _lyric_order(config.depth)
    return dataclasses.replace(config, lyrics=True, n_lyric_tokens=n_tokens,
                               encoder_dims=n_tokens, attn_order=order, **overrides)


def with_lyric_prefix(config: PriorConfig, n_tokens: int | None = None,
                      **overrides) -> PriorConfig:
    """`config` reading lyrics as the 1B lyrics model does: `n_tokens` (default
    config.n_lyric_tokens) characters before each window's codes in the one transformer
    (single_enc_dec); its prime-attention layers, if attn_order has any, read them."""
    n_tokens = n_tokens or config.n_lyric_tokens
    return dataclasses.replace(config, **{"lyrics": True, "single_enc_dec": True,
                                          "n_lyric_tokens": n_tokens, "prime_len": n_tokens,
                                          **overrides})


LYRIC_LAYOUTS = {"encoder": with_lyrics, "prefix": with_lyric_prefix}


_TINY = PriorConfig(n_lyric_tokens=32, lyric_blocks=4, lyric_attn_order=2, lyric_heads=2)
_SMALL = PriorConfig(n_ctx=2048, l_bins=512, width=256, depth=4, heads=2, blocks=32,
                     init_scale=0.7, n_lyric_tokens=256, lyric_width=128, lyric_depth=2,
                     lyric_heads=2, lyric_blocks=16, lyric_attn_order=2, lyric_init_scale=0.7)
# The released models' labels (hparams `labels` / `labels_v3`), in samples at 44.1 kHz.
_PAPER_LABELS = dict(labels=True, artist_bins=4111, genre_bins=120, max_genre_words=5,
                     t_bins=128, sample_rate=44100, max_duration=600.0)
_PAPER_UPSAMPLER = PriorConfig(n_ctx=8192, l_bins=2048, width=1920, depth=72, heads=1,
                               blocks=128, init_scale=0.4, recompute=True, level=0,
                               cond_width=1024, cond_depth=16, cond_dilation_growth_rate=3,
                               cond_dilation_cycle=8, **_PAPER_LABELS)

PRESETS = {
    # Fractions of a second per step on a CPU: for tests. Top-level priors without labels or
    # lyrics; the training task turns labels on from the codes dataset (prior/task.py).
    "tiny": _TINY,
    # The REFERENCE's small top prior: 794,368 transformer parameters, 1,449,984 in all.
    "small": _SMALL,
    # Level-1 upsamplers of the same sizes (level 0 is the same model with level=0).
    "tiny_upsampler": dataclasses.replace(_TINY, level=1),
    "small_upsampler": dataclasses.replace(_SMALL, level=1, cond_width=128, cond_depth=4),
    # The released models (openai/jukebox hparams.py: prior_5b, prior_5b_lyrics,
    # prior_1b_lyrics, upsampler_level_0/1).
    "paper_top": PriorConfig(n_ctx=8192, l_bins=2048, width=4800, depth=72, heads=8, blocks=128,
                             init_scale=0.1, recompute=True, merged_decoder=True,
                             min_duration=60.0, **_PAPER_LABELS),
    "paper_top_lyrics": PriorConfig(
        n_ctx=8192, l_bins=2048, width=4800, depth=79, heads=8, blocks=128, attn_order=10,
        init_scale=0.1, recompute=True, encoder_dims=512, merged_decoder=True,
        min_duration=23.8, **_PAPER_LABELS, lyrics=True, n_lyric_tokens=512, n_vocab=80,
        lyric_width=1280, lyric_depth=18, lyric_heads=4, lyric_blocks=32, lyric_attn_order=2,
        lyric_init_scale=0.7, lyric_loss_fraction=0.4, alignment_layer=68, alignment_head=2),
    # Single encoder-decoder: each window is 384 lyric characters then 6144 codes in one
    # transformer, whose vocabulary is 79 characters then the 2048 codes.
    "paper_1b_lyrics": PriorConfig(n_ctx=6144, l_bins=2048, width=2048, depth=72, heads=2,
                                   blocks=64, attn_order=12, init_scale=0.2, recompute=True,
                                   labels=True, artist_bins=7898, genre_bins=604,
                                   max_genre_words=1, t_bins=64, sample_rate=44100,
                                   min_duration=17.84, max_duration=600.0, lyrics=True,
                                   single_enc_dec=True, n_lyric_tokens=384, prime_len=384,
                                   n_vocab=79, lyric_loss_fraction=0.4,
                                   alignment_layer=63, alignment_head=0),
    "paper_upsampler": _PAPER_UPSAMPLER,
    "paper_upsampler_level_1": dataclasses.replace(_PAPER_UPSAMPLER, level=1,
                                                   cond_res_scale=True),
}


# The sizes `train-prior` and the pipeline offer: each a top prior and its `_upsampler`.
SIZES = tuple(name for name in PRESETS if f"{name}_upsampler" in PRESETS)


def preset_for_level(size: str, level: int, top_level: int) -> str:
    """The preset of a SIZES prior at `level`: the size itself at the top, else its upsampler."""
    return size if level == top_level else f"{size}_upsampler"


def get_preset(name: str, **overrides) -> PriorConfig:
    if name not in PRESETS:
        raise ValueError(f"unknown prior preset {name!r} (choose from {', '.join(PRESETS)})")
    return dataclasses.replace(PRESETS[name], **overrides)
