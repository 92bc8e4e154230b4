"""The priors: a top-level prior and the upsamplers, autoregressive over one level's codes.

    prior = build_prior(config)  # TopLevelPrior, LyricPrefixPrior (single_enc_dec), Upsampler
    out = prior({"codes": codes, "labels": y, "lyrics": chars, "mask": m}, training=True)
    out["logits"]   # float32 [B, n_ctx, l_bins]: position p predicts codes[:, p]
    out["loss"]     # scalar: bits per token (+ the weighted lyric loss)
    out["metrics"]  # {"bits_per_token", "accuracy", "lyric_bits_per_token"?}

Sampling (jukebox_tf/sampling) drives the same weights one chunk of positions at a time:

    cond = prior.conditioning({"labels": y, "lyrics": chars})   # or {"labels", "upper_codes"}
    cache = prior.init_cache(batch_size, cond)
    cache = prior.prime(prev_tokens, length, cache, cond)      # optional: positions [0, length)
    logits, cache = prior.step(prev_tokens, position, cache, cond)

Inputs (int32 unless noted), as the original's SimplePrior:
- "codes" [B, n_ctx]: the codes of config.level.
- "labels" [B, 4 + max_genre_words] (labels.py) when config.labels: artist and genre words
  form the start token; a top prior also adds timing embeddings at every position.
- "lyrics" [B, n_lyric_tokens] when config.lyrics: the character window (lyrics.lyric_window)
  that the lyric encoder reads (the decoder's cross-attention layers attend to its output), or
  with single_enc_dec the prefix of the window's sequence (LyricPrefixPrior).
- "upper_codes" [B, n_ctx // hop_ratio] for upsamplers: the codes of level + 1 over the same
  audio, embedded and upsampled to this level's rate, added at every position.
- "mask" float [B, n_ctx], optional: 1 where codes are real, 0 for padding (excluded from the
  loss).
"""

from __future__ import annotations

import math

import keras
import tensorflow as tf

from jukebox_tf.layers import PACKAGE
from jukebox_tf.layers.graph import build_once, dims, in_xla_context
from jukebox_tf.layers.linear import linear
from jukebox_tf.prior.config import CROSS, PRIME, PriorConfig
from jukebox_tf.prior.labels import LabelConditioner
from jukebox_tf.prior.transformer import Transformer
from jukebox_tf.prior.upsampler_conditioner import UpsamplerConditioner

_LN2 = math.log(2.0)


def _normal(stddev: float):
    return keras.initializers.RandomNormal(stddev=stddev)


def _static_length(x) -> int | tf.Tensor:
    return x.shape[1] if x.shape[1] is not None else tf.shape(x)[1]


def shift_right(tokens) -> tf.Tensor:
    """[B, T] -> [B, T]: position p holds tokens[:, p - 1]; position 0 a placeholder 0 (the
    start embedding replaces it)."""
    return tf.pad(tokens[:, :-1], [[0, 0], [1, 0]])


def bits(labels, logits) -> tf.Tensor:
    """Cross-entropy in bits per position: labels int [...], logits float32 [..., bins]."""
    return tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits) / _LN2


def _bits_and_hits(labels, logits) -> tuple[tf.Tensor, tf.Tensor]:
    """(bits per position, 1.0 where the label's logit is the largest): labels int [B, T],
    logits float32 [B, T, bins] -> float32 [B, T] each. A tie for the largest logit counts as
    a hit. Over [B * T, bins], where the maximum the cross-entropy takes is the same XLA
    reduction as the hits' (shared), rather than an argmax: a single-threaded pass over the
    logits that took 2-3% of a compiled small-prior train step."""
    flat = tf.reshape(logits, [-1, logits.shape[-1]])
    flat_labels = tf.reshape(labels, [-1])
    hits = tf.equal(tf.gather(flat, flat_labels, batch_dims=1), tf.reduce_max(flat, axis=-1))
    return (tf.reshape(bits(flat_labels, flat), tf.shape(labels)),
            tf.reshape(tf.cast(hits, tf.float32), tf.shape(labels)))


@keras.saving.register_keras_serializable(PACKAGE)
class TokenEmbedding(keras.layers.Layer):
    """The input of an autoregressive transformer (the original's ConditionalAutoregressive2D):
    position p holds the embedding of the token at p - 1 (position 0: a start embedding) plus a
    learned embedding of p. Its token table doubles as the tied output layer (`logits`).

    call(prev_tokens int [B, L], position=0, start=None) -> [B, L, width], for positions
    [position, position + L); start [B or 1, 1, width] (None: the learned start token).
    """

    def __init__(self, bins: int, n_ctx: int, width: int, init_scale: float = 1.0,
                 start_token: bool = True, dropout: float = 0.0, **kwargs):
        super().__init__(**kwargs)
        self.bins, self.n_ctx, self.width = bins, n_ctx, width
        self.init_scale, self.use_start_token, self.dropout = init_scale, start_token, dropout
        # As the original: one dropout on the token embeddings, one on the positions.
        self.token_drop = keras.layers.Dropout(dropout) if dropout > 0 else None
        self.pos_drop = keras.layers.Dropout(dropout) if dropout > 0 else None

    def build(self, input_shape=None):
        scale = self.init_scale
        self.token_emb = self.add_weight(name="token_emb", shape=(self.bins, self.width),
                                         initializer=_normal(0.02 * scale))
        self.pos_emb = self.add_weight(name="pos_emb", shape=(self.n_ctx, self.width),
                                       initializer=_normal(0.01 * scale))
        self.start_token = (self.add_weight(name="start_token", shape=(1, self.width),
                                            initializer=_normal(0.01 * scale))
                            if self.use_start_token else None)
        super().build(input_shape)

    def start(self) -> tf.Tensor:
        """The learned start embedding, [1, 1, width]."""
        if self.start_token is None:
            raise ValueError("this embedding has no learned start token: pass `start`")
        return tf.cast(self.start_token, self.compute_dtype)[None]

    def call(self, prev_tokens, position=0, start=None, training=None):
        dtype = self.compute_dtype
        length = _static_length(prev_tokens)
        # Clipped: the slot of position 0 may hold anything (the start embedding replaces it).
        ids = tf.clip_by_value(tf.cast(prev_tokens, tf.int32), 0, self.bins - 1)
        x = tf.gather(tf.cast(self.token_emb, dtype), ids)
        start = self.start() if start is None else tf.cast(start, dtype)
        if isinstance(position, int) and position == 0:
            # Position 0 known while tracing (training, priming): the start embedding's
            # gradient is then a slice, not a masked sum over every position.
            batch = tf.shape(x)[:1]
            x = tf.concat([tf.broadcast_to(start, tf.concat([batch, [1, self.width]], 0)),
                           x[:, 1:]], axis=1)
        else:
            first = tf.equal(position + tf.range(length), 0)[None, :, None]
            x = tf.where(first, start, x)
        pos = tf.slice(tf.cast(self.pos_emb, dtype), tf.stack([position, 0]),
                       tf.stack([length, self.width]))
        if self.token_drop is not None:
            x = self.token_drop(x, training=training)
            pos = self.pos_drop(pos, training=training)
        return x + pos

    def logits(self, h, kernel=None) -> tf.Tensor:
        """The tied output layer: h [B, L, width] -> [B, L, bins] (h's dtype). kernel: the
        token table already transposed (`output_kernel`: column blocks [width, <= 256]), if
        at hand."""
        if kernel is None:
            # One 2-D product over all rows, as Linear: broadcast over the batch, the table's
            # gradient would be a product per batch row and then their sum.
            shape = dims(h)
            logits = tf.matmul(tf.reshape(h, [-1, shape[-1]]), tf.cast(self.token_emb, h.dtype),
                               transpose_b=True)
            return tf.reshape(logits, shape[:-1] + [self.bins])
        return tf.concat([tf.matmul(h, tf.cast(k, h.dtype)) for k in kernel], axis=-1)

    def output_kernel(self, block: int = 256) -> tuple:
        """The token table transposed, in column blocks: `logits`' kernel as [width, <= block]
        tensors. XLA on a CPU re-transposes a transpose_b operand in every iteration of a
        sampling loop (half a small prior's step), and hands a [B, width] x [width, bins]
        product to its multi-threaded runtime above about 2^19 multiply-adds, whose
        synchronisation costs several times the product at B = 4; blocks of 256 columns stay
        on its inlined single-threaded kernels. Sampling computes this once per window
        (Prior.conditioning)."""
        table = tf.transpose(tf.cast(self.token_emb, self.compute_dtype))
        return tuple(table[:, i:i + block] for i in range(0, self.bins, block))

    def compute_output_shape(self, input_shape):
        return (input_shape[0], input_shape[1], self.width)

    def get_config(self):
        return super().get_config() | {
            "bins": self.bins, "n_ctx": self.n_ctx, "width": self.width,
            "init_scale": self.init_scale, "start_token": self.use_start_token,
            "dropout": self.dropout}


@keras.saving.register_keras_serializable(PACKAGE)
class LyricEncoder(keras.layers.Layer):
    """The top prior's lyric encoder (the original's separated encoder-decoder: prime_prior,
    prime_state_proj, prime_state_ln, prime_x_out).

    call(lyrics int [B, n_tokens]) -> (encoder_kv [B, n_tokens, out_width], logits float32
    [B, n_tokens, n_vocab]). The encoder is causal over the characters (its input is shifted
    behind a start token), so logits[:, i] predicts lyrics[:, i]: the lyric loss.
    """

    def __init__(self, encoder: PriorConfig | dict, out_width: int, out_init_scale: float = 1.0,
                 **kwargs):
        super().__init__(**kwargs)
        self.encoder = encoder = (PriorConfig.from_dict(encoder) if isinstance(encoder, dict)
                                  else encoder)
        self.out_width, self.out_init_scale = out_width, out_init_scale
        self.embedding = TokenEmbedding(encoder.l_bins, encoder.n_ctx, encoder.width,
                                        encoder.init_scale, dropout=encoder.emb_dropout,
                                        name="embedding")
        self.transformer = Transformer.from_prior_config(encoder, name="transformer")
        self.proj = linear(out_width, encoder.init_scale, name="proj")
        self.ln = keras.layers.LayerNormalization(epsilon=1e-5, name="ln")
        self.x_out = keras.layers.Dense(encoder.l_bins, use_bias=False, name="x_out",
                                        kernel_initializer=_normal(0.02 * out_init_scale))

    def build(self, input_shape=None):
        enc = self.encoder
        build_once(self.embedding, None)
        build_once(self.transformer, (None, enc.n_ctx, enc.width))
        build_once(self.proj, (None, enc.n_ctx, enc.width))
        for layer in (self.ln, self.x_out):
            build_once(layer, (None, enc.n_ctx, self.out_width))
        super().build(input_shape)

    def call(self, lyrics, training=None):
        lyrics = tf.cast(lyrics, tf.int32)
        h = self.transformer(self.embedding(shift_right(lyrics), training=training),
                             training=training)
        encoder_kv = self.ln(self.proj(h))
        return encoder_kv, tf.cast(self.x_out(encoder_kv), tf.float32)

    def compute_output_shape(self, input_shape):
        return ((input_shape[0], input_shape[1], self.out_width),
                (input_shape[0], input_shape[1], self.encoder.l_bins))

    def get_config(self):
        return super().get_config() | {"encoder": self.encoder.to_dict(),
                                       "out_width": self.out_width,
                                       "out_init_scale": self.out_init_scale}


class Prior(keras.Model):
    """What the top-level prior and the upsamplers share: token and position embeddings, the
    factorized transformer, the (tied) output layer, the label conditioner, the loss and the
    cached step. Subclasses choose the conditioning on the level above and lyrics.
    """

    def __init__(self, config: PriorConfig | dict | None = None, **kwargs):
        super().__init__(**kwargs)
        if isinstance(config, dict):
            config = PriorConfig.from_dict(config)
        self.config = config = config or PriorConfig()
        self._validate(config)
        width = config.width
        # With labels the start embedding comes from the label conditioner.
        self.embedding = TokenEmbedding(config.token_bins, config.seq_ctx, width,
                                        config.init_scale, start_token=not config.labels,
                                        dropout=config.emb_dropout, name="embedding")
        self.transformer = Transformer.from_prior_config(config, name="transformer")
        self.x_out = (keras.layers.Dense(config.l_bins, use_bias=False, name="x_out",
                                         kernel_initializer=_normal(0.02 * config.init_scale))
                      if config.merged_decoder else None)
        self.label_conditioner = (LabelConditioner(
            config.artist_bins, config.genre_bins, width, config.max_genre_words,
            n_time=config.n_ctx, include_time_signal=config.has_timing, t_bins=config.t_bins,
            t_ranges=config.t_ranges if config.has_timing else None,
            init_scale=config.init_scale, name="label_conditioner")
            if config.labels else None)
        self.upper_conditioner = None
        self.lyric_encoder = None

    def _validate(self, config: PriorConfig):
        kinds = set(config.attn_kinds)
        if config.single_enc_dec and type(self) is not LyricPrefixPrior:
            raise ValueError("a single encoder-decoder (single_enc_dec) is a LyricPrefixPrior")
        if PRIME in kinds and not config.single_enc_dec:
            raise ValueError("prime attention (kind 7) reads a lyric prefix: it needs "
                             "single_enc_dec (the 1B lyrics model's layout)")
        if CROSS in kinds and not config.lyrics:
            raise ValueError(f"attn_order {config.attn_order} has cross-attention layers, which "
                             f"read the lyric encoder: turn lyrics on (config.with_lyrics)")

    def build(self, input_shape=None):
        config, width = self.config, self.config.width
        seq = (None, config.seq_ctx, width)
        build_once(self.embedding, None)
        build_once(self.transformer, seq)
        if self.x_out is not None:
            build_once(self.x_out, seq)
        if self.label_conditioner is not None:
            build_once(self.label_conditioner, (None, config.label_width))
        if self.upper_conditioner is not None:
            build_once(self.upper_conditioner, (None, config.n_ctx // config.hop_ratio))
        if self.lyric_encoder is not None:
            build_once(self.lyric_encoder, (None, config.n_lyric_tokens))
        super().build(input_shape)

    # -- conditioning ------------------------------------------------------------------------

    @staticmethod
    def _require(inputs: dict, key: str, what: str):
        if inputs.get(key) is None:
            raise ValueError(f"this prior is conditioned on {what}: inputs need {key!r}")
        return inputs[key]

    def _conditioning(self, inputs: dict, training=None) -> tuple[dict, tf.Tensor | None]:
        """(cond, lyric logits or None); see `conditioning`."""
        config = self.config
        cond, lyric_logits = {}, None
        if self.label_conditioner is not None:
            labels = self._require(inputs, "labels",
                                   f"labels int32 [B, {config.label_width}] (labels.py)")
            cond["start"], timing = self.label_conditioner(labels)
            if timing is not None:
                cond["x_cond"] = timing
        else:
            cond["start"] = self.embedding.start()
        if self.upper_conditioner is not None:
            upper = self._require(inputs, "upper_codes", f"the codes of level {config.level + 1}"
                                  f" int32 [B, {config.n_ctx // config.hop_ratio}]")
            cond["x_cond"] = self.upper_conditioner(tf.cast(upper, tf.int32))
        if self.lyric_encoder is not None:
            lyrics = self._require(inputs, "lyrics",
                                   f"lyric tokens int32 [B, {config.n_lyric_tokens}]")
            cond["encoder_kv"], lyric_logits = self.lyric_encoder(lyrics, training=training)
        return cond, lyric_logits

    def conditioning(self, inputs: dict, training=False) -> dict:
        """The conditioning of a batch, computed once per window and passed back unchanged to
        `init_cache` and `step`: {"start" [B|1, 1, W], "x_cond" [B, n_ctx, W] (timing or the
        upsampled level above, when there is one), "encoder_kv" [B, n_lyric_tokens, W] (with
        lyrics), "output_kernel" (the tied output layer's kernel [W, l_bins], transposed once
        here rather than in every step, in column blocks: TokenEmbedding.output_kernel)}.
        inputs: the conditioning inputs of the module docstring (no codes needed).
        """
        cond = self._conditioning(inputs, training)[0]
        if self.x_out is None:
            cond["output_kernel"] = self.embedding.output_kernel()
        return cond

    # -- forward -----------------------------------------------------------------------------

    def _embed(self, prev_tokens, position, cond: dict, training=None):
        """(The transformer's input [B, L, W] at positions [position, position + L) from the
        tokens before them (prev_tokens [B, L]), the per-position conditioning there
        [B, L, W] or None)."""
        length = _static_length(prev_tokens)
        x = self.embedding(prev_tokens, position=position, start=cond["start"],
                           training=training)
        x_cond = cond.get("x_cond")
        if x_cond is not None:
            x_cond = tf.slice(tf.cast(x_cond, x.dtype), tf.stack([0, position, 0]),
                              tf.stack([-1, length, -1]))
            x = x + x_cond
        return x, x_cond

    def _forward(self, prev_tokens, position, cond: dict, cache=None, training=None):
        """Logits float32 [B, L, l_bins] of positions [position, position + L) from the tokens
        before them (prev_tokens [B, L]); with a cache also the new cache."""
        x, x_cond = self._embed(prev_tokens, position, cond, training)
        h = self.transformer(x, encoder_kv=cond.get("encoder_kv"), cache=cache,
                             position=position, training=training)
        if cache is not None:
            h, cache = h
        if x_cond is not None and not self.config.merged_decoder:
            h = h + x_cond  # the original adds the conditioning after the transformer too
        logits = (self.x_out(h) if self.x_out is not None
                  else self.embedding.logits(h, cond.get("output_kernel")))
        return tf.cast(logits, tf.float32), cache

    # Whether the training forward runs as one XLA cluster when it is part of a graph (the
    # compiled train step: a call with training=True inside a tf.function). Forward and
    # backward then fuse their elementwise work (LayerNorms, activations, masks, softmaxes)
    # instead of running one kernel per op: about a third less time per step on a CPU.
    # Eager calls and inference are unaffected. Set False on the class or an instance to
    # trace the plain graph.
    jit_compile_training = True

    def call(self, inputs: dict, training=False, return_logits: bool = True):
        """inputs (module docstring) -> {"logits", "loss", "metrics"}; without "logits" when
        return_logits is False (the train step's call: a compiled training call otherwise
        writes out [B, n_ctx, l_bins] float32 logits nobody reads, ~2% of a step)."""
        if (training and self.jit_compile_training and tf.inside_function()
                and not in_xla_context()):
            cache = self.__dict__.setdefault("_compiled_training_calls", {})  # not tracked
            compiled = cache.get(return_logits)
            if compiled is None:
                compiled = cache[return_logits] = tf.function(
                    lambda inputs: self._call(inputs, True, return_logits),
                    jit_compile=True, autograph=False)
            return compiled(dict(inputs))
        return self._call(inputs, training, return_logits)

    def _call(self, inputs: dict, training=False, return_logits: bool = True):
        config = self.config
        codes = tf.cast(self._require(inputs, "codes", f"codes int32 [B, {config.n_ctx}]"),
                        tf.int32)
        cond, lyric_logits = self._conditioning(inputs, training)
        logits, _ = self._forward(shift_right(codes), 0, cond, training=training)
        gen_loss, accuracy = _masked_means(*_bits_and_hits(codes, logits), inputs.get("mask"))
        metrics = {"bits_per_token": gen_loss, "accuracy": accuracy}
        loss = gen_loss
        if lyric_logits is not None:
            lyric_loss = tf.reduce_mean(bits(tf.cast(inputs["lyrics"], tf.int32), lyric_logits))
            metrics["lyric_bits_per_token"] = lyric_loss
            loss = _with_lyric_loss(config, gen_loss, lyric_loss)
        out = {"loss": loss, "metrics": metrics}
        return {"logits": logits, **out} if return_logits else out

    # -- lyric alignment -----------------------------------------------------------------------

    def lyric_attention(self, inputs: dict) -> tf.Tensor:
        """float32 [B, n_ctx, n_lyric_tokens]: how much each music position attends to each
        lyric character of its window, in the layer and head of config.lyric_alignment (the
        original's alignment); inputs as `call`'s."""
        config = self.config
        if config.lyric_alignment is None:
            raise ValueError("this prior has no layer whose attention over the lyrics can be "
                             "read (config.lyric_alignment)")
        layer, head = config.lyric_alignment
        codes = tf.cast(self._require(inputs, "codes", f"codes int32 [B, {config.n_ctx}]"),
                        tf.int32)
        cond, _ = self._conditioning(inputs, False)
        x, encoder_kv, skip = self._alignment_input(codes, cond)
        weights = self.transformer.attention_weights(x, layer, encoder_kv)[:, head]
        return weights[:, skip:, :config.n_lyric_tokens]

    def _alignment_input(self, codes, cond: dict):
        """(The transformer's input, the encoder output, the positions before the music)."""
        x, _ = self._embed(shift_right(codes), 0, cond, training=False)
        return x, cond.get("encoder_kv"), 0

    # -- sampling ----------------------------------------------------------------------------

    def init_cache(self, batch_size: int, cond: dict) -> dict:
        """The empty key/value cache of every transformer block (static shapes); cross-attention
        blocks hold the lyric encoder's keys and values, projected once here."""
        encoder_kv = cond.get("encoder_kv")
        if encoder_kv is not None:
            encoder_kv = tf.broadcast_to(encoder_kv, [batch_size, *encoder_kv.shape[1:]])
        return self.transformer.init_cache(batch_size, self.compute_dtype, encoder_kv)

    def step(self, prev_tokens, position, cache: dict, cond: dict):
        """Logits of the codes at positions [position, position + L) and the updated cache.

        prev_tokens int32 [B, L] (L static): prev_tokens[:, i] is the code at position
        position + i - 1 (ignored where position + i == 0: the start embedding is used).
        Returns (logits float32 [B, L, l_bins], new_cache); equal to `call`'s logits there.
        """
        return self._forward(tf.cast(prev_tokens, tf.int32), tf.cast(position, tf.int32),
                             cond, cache, training=False)

    def prime(self, prev_tokens, length, cache: dict, cond: dict) -> dict:
        """The cache with positions [0, length) written, as `step` over them would leave it,
        by one uncached forward pass: the training forward (blocked attention: O(T * block_ctx)
        per row or previous-block layer, O(T * blocks) per column layer; no logits) and one
        cache write per layer, where chunks of `step` would each attend to and rewrite the
        whole cache (n_ctx slots for dense and column layers).

        prev_tokens int32 [B, T] (T static, <= n_ctx): `step`'s inputs from position 0;
        those at positions >= length are never read (attention is causal). length: int32
        scalar, 0 <= length <= T. cache: fresh from init_cache. Outside XLA the pass covers
        `length` rounded up to whole blocks; under XLA (static shapes) all T positions, so a
        short prime costs a whole window's forward there: less than compiling passes of
        other lengths would cost (seconds, against tens of milliseconds for the small prior).
        """
        if isinstance(length, int) and not 0 <= length <= prev_tokens.shape[1]:
            raise ValueError(f"prime length {length} is not in [0, {prev_tokens.shape[1]}]")
        x, _ = self._embed(self._whole_blocks(prev_tokens, length), 0, cond, training=False)
        return self.transformer(x, cache=cache, prime_length=length, training=False)[1]

    def _whole_blocks(self, prev_tokens, length=None, offset: int = 0):
        """prev_tokens [B, T] (T static, <= n_ctx) padded with zeros so that they and the
        `offset` positions before them (a lyric prefix) fill whole blocks, the length the
        blocked attention layers take; with `length` (outside XLA, where shapes may be
        dynamic) cut to the blocks that hold positions [0, offset + length), with at least
        one of prev_tokens (the cache write gathers from them)."""
        prev_tokens = tf.cast(prev_tokens, tf.int32)
        total = prev_tokens.shape[1]
        if total is None or total > self.config.n_ctx:
            raise ValueError(f"need a static number of positions <= n_ctx="
                             f"{self.config.n_ctx}, got {total}")
        block = self.config.block_ctx or 1
        prev_tokens = tf.pad(prev_tokens, [[0, 0], [0, -(offset + total) % block]])
        if length is None or in_xla_context():
            return prev_tokens
        end = offset + tf.maximum(tf.cast(length, tf.int32), 1)
        return prev_tokens[:, :(end + block - 1) // block * block - offset]

    def forward_logits(self, prev_tokens, cond: dict):
        """Logits float32 [B, T, l_bins] of positions [0, T) (T <= n_ctx, static) by one
        uncached forward pass: the training forward (blocked attention, no cache), padded to
        whole blocks. The naive sampler's reference for `step`; costs O(T * block_ctx) per
        layer where step chunks over an empty cache would build [T, cache_len + T] logits."""
        length = _static_length(prev_tokens)
        logits, _ = self._forward(self._whole_blocks(prev_tokens), 0, cond, training=False)
        return logits[:, :length]

    def get_config(self):
        return super().get_config() | {"config": self.config.to_dict()}


@keras.saving.register_keras_serializable(PACKAGE)
class TopLevelPrior(Prior):
    """The prior over the top level's codes: labels give the start token and timing
    embeddings, and an optional lyric encoder feeds the cross-attention layers."""

    def __init__(self, config: PriorConfig | dict | None = None, **kwargs):
        super().__init__(config, **kwargs)
        config = self.config
        if config.lyrics and not config.single_enc_dec:
            self.lyric_encoder = LyricEncoder(config.lyric_encoder_config, config.width,
                                              out_init_scale=config.init_scale,
                                              name="lyric_encoder")

    def _validate(self, config: PriorConfig):
        super()._validate(config)
        if config.is_upsampler:
            raise ValueError(f"level {config.level} of {config.levels} is conditioned on the "
                             f"level above: build an Upsampler")


@keras.saving.register_keras_serializable(PACKAGE)
class Upsampler(Prior):
    """A prior over level `config.level` given the codes of level + 1, upsampled to this
    level's rate and added at every position; labels give the start token (no timing)."""

    def __init__(self, config: PriorConfig | dict | None = None, **kwargs):
        super().__init__(config, **kwargs)
        config = self.config
        self.upper_conditioner = UpsamplerConditioner(
            config.l_bins, config.width, down_t=config.cond_down_t,
            stride_t=config.cond_stride_t, width=config.cond_width, depth=config.cond_depth,
            m_conv=config.cond_m_conv, dilation_growth_rate=config.cond_dilation_growth_rate,
            dilation_cycle=config.cond_dilation_cycle, res_scale=config.cond_res_scale,
            reverse_dilation=False, init_scale=config.init_scale, name="upper_conditioner")

    def _validate(self, config: PriorConfig):
        super()._validate(config)
        if not config.is_upsampler:
            raise ValueError(f"level {config.level} is the top of {config.levels} levels: "
                             f"build a TopLevelPrior")


@keras.saving.register_keras_serializable(PACKAGE)
class LyricPrefixPrior(TopLevelPrior):
    """The 1B lyrics model's layout (the original's single_enc_dec): one transformer over a
    window's P = n_lyric_tokens lyric characters followed by its n_ctx codes, with one token
    vocabulary, the n_vocab characters then the codes (code c is token n_vocab + c), and the
    output tied to it. The label start embedding opens the sequence; the timing embeddings are
    added over the codes only (zero over the lyrics); the lyric part's loss is the lyric loss.

    Sampling runs on tokens: `step` and `prime` read tokens of the whole vocabulary at music
    positions and give logits over it, and the sampler converts a window's codes `to_tokens`
    and back `to_codes`, where a character drawn at a music position becomes code 0, as in the
    original. The lyric prefix is written into the cache by `prime`, which the sampler runs
    even for an empty prime (`always_prime`).
    """

    always_prime = True

    def _conditioning(self, inputs: dict, training=None) -> tuple[dict, tf.Tensor | None]:
        cond, _ = super()._conditioning(inputs, training)
        config = self.config
        lyrics = self._require(inputs, "lyrics",
                               f"lyric tokens int32 [B, {config.n_lyric_tokens}]")
        cond["prefix"] = tf.cast(lyrics, tf.int32)
        return cond, None

    def to_tokens(self, codes):
        """Codes -> tokens of the whole vocabulary."""
        return codes + self.config.n_vocab

    def to_codes(self, tokens):
        """Tokens -> codes; a character is code 0 (the original clamps it so)."""
        return tf.maximum(tokens - self.config.n_vocab, 0)

    def _sequence(self, music_prev, cond, training=None):
        """(The transformer's input [B, P + T, W] over the prefix then music positions
        [0, T), the per-position conditioning added there [B, P + T, W]). music_prev: the
        tokens feeding music positions (position 0's is the prefix's last character)."""
        lyrics = cond["prefix"]
        tokens = tf.concat([shift_right(lyrics), lyrics[:, -1:], music_prev[:, 1:]], axis=1)
        x = self.embedding(tokens, position=0, start=cond["start"], training=training)
        x_cond = cond.get("x_cond")
        if x_cond is None:
            return x, None
        length = _static_length(music_prev)
        x_cond = tf.pad(tf.cast(x_cond, x.dtype)[:, :length],
                        [[0, 0], [self.config.n_lyric_tokens, 0], [0, 0]])
        return x + x_cond, x_cond

    def _alignment_input(self, codes, cond: dict):
        x, _ = self._sequence(shift_right(self.to_tokens(codes)), cond)
        return x, None, self.config.n_lyric_tokens

    def _head(self, h, x_cond, cond):
        """Logits float32 over the whole vocabulary (the tied output layer)."""
        if x_cond is not None:
            h = h + x_cond
        return tf.cast(self.embedding.logits(h, cond.get("output_kernel")), tf.float32)

    def _call(self, inputs: dict, training=False, return_logits: bool = True):
        config = self.config
        codes = tf.cast(self._require(inputs, "codes", f"codes int32 [B, {config.n_ctx}]"),
                        tf.int32)
        cond, _ = self._conditioning(inputs, training)
        music = self.to_tokens(codes)
        x, x_cond = self._sequence(shift_right(music), cond, training)
        logits = self._head(self.transformer(x, training=training), x_cond, cond)
        prefix = config.n_lyric_tokens
        lyric_bits = tf.reduce_mean(bits(cond["prefix"], logits[:, :prefix]))
        gen_loss, accuracy = _masked_means(*_bits_and_hits(music, logits[:, prefix:]),
                                           inputs.get("mask"))
        loss = _with_lyric_loss(config, gen_loss, lyric_bits)
        out = {"loss": loss, "metrics": {"bits_per_token": gen_loss, "accuracy": accuracy,
                                         "lyric_bits_per_token": lyric_bits}}
        if return_logits:
            # Position p's distribution of codes (the characters' share left out), and the
            # whole sequence's over the whole vocabulary.
            out["logits"] = logits[:, prefix:, config.n_vocab:]
            out["sequence_logits"] = logits
        return out

    def step(self, prev_tokens, position, cache: dict, cond: dict):
        """Logits float32 [B, L, token_bins] of music positions [position, position + L) and
        the new cache; prev_tokens: tokens (to_tokens), position 0's replaced by the prefix's
        last character."""
        config = self.config
        position = tf.cast(position, tf.int32)
        prev_tokens = tf.cast(prev_tokens, tf.int32)
        length = _static_length(prev_tokens)
        first = tf.equal(position + tf.range(length), 0)[None]
        prev_tokens = tf.where(first, cond["prefix"][:, -1:], prev_tokens)
        at = config.n_lyric_tokens + position
        x = self.embedding(prev_tokens, position=at, start=cond["start"], training=False)
        x_cond = cond.get("x_cond")
        if x_cond is not None:
            x_cond = tf.slice(tf.cast(x_cond, x.dtype), tf.stack([0, position, 0]),
                              tf.stack([-1, length, -1]))
            x = x + x_cond
        h, cache = self.transformer(x, cache=cache, position=at, training=False)
        return self._head(h, x_cond, cond), cache

    def prime(self, prev_tokens, length, cache: dict, cond: dict) -> dict:
        """The fresh cache with the lyric prefix and music positions [0, length) written, by
        one forward pass over the blocks that hold them (under XLA: the whole window)."""
        prefix = self.config.n_lyric_tokens
        x, _ = self._sequence(self._whole_blocks(prev_tokens, length, prefix), cond)
        return self.transformer(x, cache=cache, training=False,
                                prime_length=prefix + length)[1]

    def forward_logits(self, prev_tokens, cond: dict):
        """Logits float32 [B, T, token_bins] of music positions [0, T) (uncached)."""
        length = _static_length(prev_tokens)
        x, x_cond = self._sequence(
            self._whole_blocks(prev_tokens, offset=self.config.n_lyric_tokens), cond)
        logits = self._head(self.transformer(x, training=False), x_cond, cond)
        prefix = self.config.n_lyric_tokens
        return logits[:, prefix:prefix + length]


def _masked_means(per_token, correct, mask=None):
    """(Mean bits, mean accuracy) over the positions mask [B, T] keeps (all without one)."""
    if mask is None:
        return tf.reduce_mean(per_token), tf.reduce_mean(correct)
    mask = tf.cast(mask, tf.float32)
    count = tf.maximum(tf.reduce_sum(mask), 1.0)
    return tf.reduce_sum(per_token * mask) / count, tf.reduce_sum(correct * mask) / count


def _with_lyric_loss(config: PriorConfig, gen_loss, lyric_loss):
    """The original's weighting: each loss by its share of all predicted tokens, the lyrics'
    further by lyric_loss_fraction."""
    n_lyrics, n_codes = config.n_lyric_tokens, config.n_ctx
    return (config.lyric_loss_fraction * lyric_loss * n_lyrics + gen_loss * n_codes) / (
        n_lyrics + n_codes)


def prior_class(config: PriorConfig) -> type[Prior]:
    if config.single_enc_dec:
        return LyricPrefixPrior
    return Upsampler if config.is_upsampler else TopLevelPrior


def build_prior(config: PriorConfig) -> Prior:
    """The TopLevelPrior or Upsampler of `config`, with all its variables created."""
    model = prior_class(config)(config)
    model.build()
    return model
