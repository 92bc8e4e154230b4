"""Prior (factorized-attention transformer) hyperparameters as a frozen dataclass, with presets.

Field names follow the original's hparams where they carry over (n_ctx, l_bins, blocks,
attn_order, init_scale, zero_out, res_scale, encoder_dims, prime_len); `width`/`depth` are its
prior_width/prior_depth and `attn_mult`/`mlp_mult` its m_attn/m_mlp.
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

    def __post_init__(self):
        if isinstance(self.attn_order, list):
            object.__setattr__(self, "attn_order", tuple(self.attn_order))
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
        if self.blocks is not None and (self.blocks < 1 or self.n_ctx % self.blocks):
            raise ValueError(f"n_ctx={self.n_ctx} is not divisible by blocks={self.blocks}")
        if self.blocks is None and kinds & {*BLOCKED_KINDS, PRIME}:
            raise ValueError(f"attn_order {self.attn_order} uses factorized or prime attention, "
                             f"which needs `blocks`")
        if CROSS in kinds and self.encoder_dims < 1:
            raise ValueError(f"attn_order {self.attn_order} has cross-attention layers: set "
                             f"encoder_dims to the encoder output length")
        if PRIME in kinds and (self.prime_len is None or not 0 < self.prime_len < self.n_ctx):
            raise ValueError(f"attn_order {self.attn_order} has prime-attention layers: set "
                             f"prime_len to the prefix length (0 < prime_len < n_ctx)")
        if self.afn not in ACTIVATIONS:
            raise ValueError(f"afn {self.afn!r} is not one of {ACTIVATIONS}")
        if self.pos_emb != "learned":
            raise ValueError(f"pos_emb {self.pos_emb!r}: only 'learned' is implemented")
        for name in ("attn_dropout", "resid_dropout", "emb_dropout"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ValueError(f"{name} must be in [0, 1), got {getattr(self, name)}")

    @property
    def block_ctx(self) -> int | None:
        """Positions per block: n_ctx // blocks (None without blocks)."""
        return None if self.blocks is None else self.n_ctx // self.blocks

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

    def to_dict(self) -> dict:
        values = dataclasses.asdict(self)
        if not isinstance(self.attn_order, int):
            values["attn_order"] = list(self.attn_order)
        return values

    @classmethod
    def from_dict(cls, values: dict) -> "PriorConfig":
        fields = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - fields)
        if unknown:
            raise ValueError(f"unknown prior config field(s): {', '.join(unknown)}")
        return cls(**values)


PRESETS = {
    # Fractions of a second per step on a CPU: for tests.
    "tiny": PriorConfig(),
    # The REFERENCE's small top prior: 794,368 transformer parameters.
    "small": PriorConfig(n_ctx=2048, l_bins=512, width=256, depth=4, heads=2, blocks=32,
                         init_scale=0.7),
    # The released models (openai/jukebox hparams.py: prior_5b, prior_5b_lyrics,
    # prior_1b_lyrics, upsampler_level_0/1).
    "paper_top": PriorConfig(n_ctx=8192, l_bins=2048, width=4800, depth=72, heads=8, blocks=128,
                             init_scale=0.1, recompute=True),
    "paper_top_lyrics": PriorConfig(n_ctx=8192, l_bins=2048, width=4800, depth=79, heads=8,
                                    blocks=128, attn_order=10, init_scale=0.1, recompute=True,
                                    encoder_dims=512),
    # Single encoder-decoder: the sequence is 384 lyric tokens then 6144 music tokens, and the
    # vocabulary is 79 characters plus 2048 codes.
    "paper_1b_lyrics": PriorConfig(n_ctx=384 + 6144, l_bins=79 + 2048, width=2048, depth=72,
                                   heads=2, blocks=64, attn_order=12, init_scale=0.2,
                                   recompute=True, prime_len=384),
    "paper_upsampler": PriorConfig(n_ctx=8192, l_bins=2048, width=1920, depth=72, heads=1,
                                   blocks=128, init_scale=0.4, recompute=True),
}


def get_preset(name: str, **overrides) -> PriorConfig:
    if name not in PRESETS:
        raise ValueError(f"unknown prior preset {name!r} (choose from {', '.join(PRESETS)})")
    return dataclasses.replace(PRESETS[name], **overrides)
