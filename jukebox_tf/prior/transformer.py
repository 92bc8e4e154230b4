"""The priors' transformer: pre-LayerNorm residual blocks of factorized attention and an MLP.

Shapes: [batch, time, width]. Each block computes a = attn(LN(x)); m = mlp(LN(x + a));
h = x + a + m (x + res_scale * (a + m) with res_scale). The attention kind of block d comes
from `attn_order` (see config.attn_kinds). Sampling threads a cache dict
{"block_<d>": {"key", "value"}} through every block (see factorized_attention), and primes it
with one training forward (`prime_length`).
"""

from __future__ import annotations

import keras
import tensorflow as tf

from jukebox_tf.layers import PACKAGE
from jukebox_tf.layers.graph import build_once
from jukebox_tf.layers.linear import LayerNorm, linear
from jukebox_tf.prior.config import ACTIVATIONS, CROSS, DENSE, AttnOrder, PriorConfig, attn_kinds
from jukebox_tf.prior.factorized_attention import FactorizedAttention


def _activation(name: str):
    if name == "quick_gelu":
        return lambda x: x * tf.sigmoid(1.702 * x)
    if name == "gelu":  # the original's tanh approximation
        return lambda x: tf.nn.gelu(x, approximate=True)
    if name == "relu":
        return tf.nn.relu
    if name == "swish":
        return tf.nn.silu
    raise ValueError(f"afn {name!r} is not one of {ACTIVATIONS}")


def _layer_norm(name: str) -> keras.layers.LayerNormalization:
    return LayerNorm(epsilon=1e-5, name=name)


@keras.saving.register_keras_serializable(PACKAGE)
class MLP(keras.layers.Layer):
    """c_proj(afn(c_fc(x))): [batch, time, width] -> [batch, time, width] via n_state."""

    def __init__(self, width: int, n_state: int, afn: str = "quick_gelu",
                 init_scale: float = 1.0, zero_out: bool = False, resid_dropout: float = 0.0,
                 **kwargs):
        super().__init__(**kwargs)
        self.width, self.n_state, self.afn = width, n_state, afn
        self.init_scale, self.zero_out, self.resid_dropout = init_scale, zero_out, resid_dropout
        self.act = _activation(afn)
        self.c_fc = linear(n_state, init_scale, name="c_fc")
        self.c_proj = linear(width, init_scale, zero_out, name="c_proj")
        self.drop = keras.layers.Dropout(resid_dropout) if resid_dropout > 0 else None

    def build(self, input_shape):
        build_once(self.c_fc, input_shape)
        build_once(self.c_proj, tuple(input_shape[:-1]) + (self.n_state,))
        super().build(input_shape)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def call(self, x, norm=None, training=None):
        """With `norm` (a LayerNorm), the MLP of norm(x) (folded into c_fc: Linear.call)."""
        m = self.c_proj(self.act(self.c_fc(x, norm=norm)))
        return m if self.drop is None else self.drop(m, training=training)

    def get_config(self):
        return super().get_config() | {
            "width": self.width, "n_state": self.n_state, "afn": self.afn,
            "init_scale": self.init_scale, "zero_out": self.zero_out,
            "resid_dropout": self.resid_dropout}


@keras.saving.register_keras_serializable(PACKAGE)
class ResAttnBlock(keras.layers.Layer):
    """One pre-LN block: [batch, time, width] -> [batch, time, width]."""

    def __init__(self, width: int, heads: int, n_ctx: int, attn_kind: int = DENSE,
                 blocks: int | None = None, attn_mult: float = 0.25, mlp_mult: float = 1.0,
                 afn: str = "quick_gelu", init_scale: float = 1.0, zero_out: bool = False,
                 res_scale: float = 1.0, attn_dropout: float = 0.0, resid_dropout: float = 0.0,
                 encoder_dims: int = 0, prime_len: int | None = None, **kwargs):
        super().__init__(**kwargs)
        self.config_args = {
            "width": width, "heads": heads, "n_ctx": n_ctx, "attn_kind": attn_kind,
            "blocks": blocks, "attn_mult": attn_mult, "mlp_mult": mlp_mult, "afn": afn,
            "init_scale": init_scale, "zero_out": zero_out, "res_scale": res_scale,
            "attn_dropout": attn_dropout, "resid_dropout": resid_dropout,
            "encoder_dims": encoder_dims, "prime_len": prime_len}
        self.width, self.attn_kind, self.res_scale = width, attn_kind, res_scale
        self.ln_0 = _layer_norm("ln_0")
        self.attn = FactorizedAttention(
            width, int(attn_mult * width), heads, n_ctx, attn_kind, blocks=blocks,
            encoder_dims=encoder_dims, prime_len=prime_len, init_scale=init_scale,
            zero_out=zero_out, attn_dropout=attn_dropout, resid_dropout=resid_dropout,
            name="attn")
        self.ln_1 = _layer_norm("ln_1")
        self.mlp = MLP(width, int(mlp_mult * width), afn, init_scale, zero_out, resid_dropout,
                       name="mlp")

    def build(self, input_shape):
        for layer in (self.ln_0, self.attn, self.ln_1, self.mlp):
            build_once(layer, input_shape)
        super().build(input_shape)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def call(self, x, encoder_kv=None, cache=None, position=None, prime_length=None,
             training=None):
        """x [batch, time, width] -> h; with a cache, (h, new_cache) (see FactorizedAttention)."""
        if cache is None:  # training: the LayerNorms folded into c_attn, c_fc (Linear.call)
            a = self.attn(x, encoder_kv=encoder_kv, position=position,
                          prime_length=prime_length, norm=self.ln_0, training=training)
            m = self.mlp(x + a, norm=self.ln_1, training=training)
        else:  # sampling: not folding again at every step
            a, cache = self.attn(self.ln_0(x), encoder_kv=encoder_kv, cache=cache,
                                 position=position, prime_length=prime_length,
                                 training=training)
            m = self.mlp(self.ln_1(x + a), training=training)
        h = x + a + m if self.res_scale == 1.0 else x + self.res_scale * (a + m)
        return h if cache is None else (h, cache)

    def get_config(self):
        return super().get_config() | self.config_args


@keras.saving.register_keras_serializable(PACKAGE)
class Transformer(keras.layers.Layer):
    """`depth` ResAttnBlocks: [batch, time, width] -> [batch, time, width].

    Cross-attention blocks (kind 6) read encoder_kv [batch, encoder_dims, width] and, as the
    original, zero-initialise their residual projections. recompute=True wraps each block in
    tf.recompute_grad (activations recomputed in the backward pass; keep dropout at 0 then).
    """

    def __init__(self, width: int, depth: int, heads: int, n_ctx: int,
                 blocks: int | None = None, attn_order: AttnOrder = 0, attn_mult: float = 0.25,
                 mlp_mult: float = 1.0, afn: str = "quick_gelu", init_scale: float = 1.0,
                 zero_out: bool = False, res_scale: bool = False, attn_dropout: float = 0.0,
                 resid_dropout: float = 0.0, encoder_dims: int = 0,
                 prime_len: int | None = None, recompute: bool = False, **kwargs):
        super().__init__(**kwargs)
        if not isinstance(attn_order, int):
            attn_order = tuple(attn_order)  # a list after a JSON round trip
        self.config_args = {
            "width": width, "depth": depth, "heads": heads, "n_ctx": n_ctx, "blocks": blocks,
            "attn_order": attn_order, "attn_mult": attn_mult, "mlp_mult": mlp_mult,
            "afn": afn, "init_scale": init_scale, "zero_out": zero_out,
            "res_scale": res_scale, "attn_dropout": attn_dropout,
            "resid_dropout": resid_dropout, "encoder_dims": encoder_dims,
            "prime_len": prime_len, "recompute": recompute}
        self.width, self.recompute = width, recompute
        self.attn_kinds = attn_kinds(attn_order, depth)
        self.res_blocks = [
            ResAttnBlock(width, heads, n_ctx, kind, blocks=blocks, attn_mult=attn_mult,
                         mlp_mult=mlp_mult, afn=afn, init_scale=init_scale,
                         zero_out=zero_out or kind == CROSS,
                         res_scale=1.0 / depth if res_scale else 1.0,
                         attn_dropout=attn_dropout, resid_dropout=resid_dropout,
                         encoder_dims=encoder_dims, prime_len=prime_len, name=f"block_{d}")
            for d, kind in enumerate(self.attn_kinds)]

    @classmethod
    def from_prior_config(cls, config: PriorConfig, **kwargs) -> "Transformer":
        return cls(config.width, config.depth, config.heads, config.seq_ctx, blocks=config.blocks,
                   attn_order=config.attn_order, attn_mult=config.attn_mult,
                   mlp_mult=config.mlp_mult, afn=config.afn, init_scale=config.init_scale,
                   zero_out=config.zero_out, res_scale=config.res_scale,
                   attn_dropout=config.attn_dropout, resid_dropout=config.resid_dropout,
                   encoder_dims=config.encoder_dims, prime_len=config.prime_len,
                   recompute=config.recompute, **kwargs)

    def build(self, input_shape):
        for block in self.res_blocks:
            build_once(block, input_shape)
        super().build(input_shape)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def init_cache(self, batch_size: int, dtype=None, encoder_kv=None) -> dict:
        """{"block_<d>": {"key", "value"}} (see FactorizedAttention.init_cache); encoder_kv
        [batch, encoder_dims, width] is needed when there are cross-attention blocks."""
        if not self.built:
            self.build((None, None, self.width))
        return {f"block_{d}": block.attn.init_cache(
                    batch_size, dtype, encoder_kv if block.attn_kind == CROSS else None)
                for d, block in enumerate(self.res_blocks)}

    def _run_block(self, block, x, encoder_kv, training):
        if not self.recompute:
            return block(x, encoder_kv=encoder_kv, training=training)
        if encoder_kv is None:
            return tf.recompute_grad(lambda h: block(h, training=training))(x)
        return tf.recompute_grad(
            lambda h, e: block(h, encoder_kv=e, training=training))(x, encoder_kv)

    def attention_weights(self, x, layer: int, encoder_kv=None) -> tf.Tensor:
        """Layer `layer`'s attention weights float32 [batch, heads, time, keys] in the
        forward pass over x [batch, time, width] (FactorizedAttention.attention_weights)."""
        for block in self.res_blocks[:layer]:
            x = block(x, encoder_kv=encoder_kv if block.attn_kind == CROSS else None)
        block = self.res_blocks[layer]
        return block.attn.attention_weights(block.ln_0(x), encoder_kv)

    def call(self, x, encoder_kv=None, cache=None, position=None, prime_length=None,
             training=None):
        """x [batch, time, width] -> h [batch, time, width].

        With `cache` (from init_cache or a previous call), x holds positions
        [position, position + time) and (h, new_cache) is returned; cross-attention blocks
        then read the encoder keys/values that init_cache projected. With `cache` and
        `prime_length` instead of `position`: the training forward over positions [0, time)
        (whole blocks; those from prime_length on may be padding), which fills the empty
        cache with positions [0, prime_length) (FactorizedAttention.call).
        """
        if cache is None:
            for block in self.res_blocks:
                x = self._run_block(block, x, encoder_kv if block.attn_kind == CROSS else None,
                                    training)
            return x
        new_cache = {}
        for d, block in enumerate(self.res_blocks):
            key = f"block_{d}"
            x, new_cache[key] = block(x, cache=cache[key], position=position,
                                      prime_length=prime_length, training=training)
        return x, new_cache

    def get_config(self):
        return super().get_config() | self.config_args
