"""Factorized attention and the prior transformer: every kind against a dense numpy reference,
cached sampling (step by step and in chunks) against the full forward, priming in one forward
pass against chunked priming, serialization, cost structure and parameter counts."""

import json

import keras
import numpy as np
import pytest
import tensorflow as tf

from jukebox_tf.prior.config import (PRESETS, PriorConfig, attn_kinds, count_transformer_params,
                                     get_preset, prime_attn_len)
from jukebox_tf.layers.linear import LayerNorm, Linear, broadcast_rows, sum_rows
from jukebox_tf.prior.factorized_attention import FactorizedAttention
from jukebox_tf.prior.transformer import ResAttnBlock, Transformer

WIDTH, N_STATE, HEADS, N_CTX, BLOCKS = 16, 8, 2, 32, 8
BLOCK_CTX = N_CTX // BLOCKS  # 4
ENC_LEN, PRIME_LEN = 6, 5
PRIME_KEYS = 8  # the original rounds prime_len past itself to a multiple of blocks
BATCH = 2
KINDS = [0, 1, 2, 3, 6, 7]
MIXED_ORDER = (1, 2, 3, 0, 6, 7)


def randomize(layer, seed=0, std=0.3):
    """Random weights everywhere (biases and LayerNorms too), so that attention is peaked and
    every parameter matters."""
    rng = np.random.default_rng(seed)
    layer.set_weights([rng.normal(0.0, std, w.shape).astype(np.float32)
                       for w in layer.get_weights()])
    return layer


def inputs(seed=1, n=N_CTX):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(BATCH, n, WIDTH)).astype(np.float32)
    enc = rng.normal(size=(BATCH, ENC_LEN, WIDTH)).astype(np.float32)
    return tf.constant(x), tf.constant(enc)


def make_attention(kind, n_ctx=N_CTX, blocks=BLOCKS):
    layer = FactorizedAttention(WIDTH, N_STATE, HEADS, n_ctx, kind, blocks=blocks,
                                encoder_dims=ENC_LEN, prime_len=PRIME_LEN)
    layer.build((None, None, WIDTH))
    return randomize(layer, seed=kind)


def make_transformer(**kwargs):
    args = dict(width=WIDTH, depth=len(MIXED_ORDER), heads=HEADS, n_ctx=N_CTX, blocks=BLOCKS,
                attn_order=MIXED_ORDER, attn_mult=N_STATE / WIDTH, encoder_dims=ENC_LEN,
                prime_len=PRIME_LEN) | kwargs
    model = Transformer(**args)
    model.build((None, None, WIDTH))
    return randomize(model, seed=7, std=0.2)


# -- (a) every kind equals dense attention with an explicit [n, n] mask ------------------------

def numpy_mask(kind, n):
    i, j = np.arange(n)[:, None], np.arange(n)[None, :]
    causal = j <= i
    same_block = i // BLOCK_CTX == j // BLOCK_CTX
    return {0: causal,
            1: causal & same_block,
            2: causal & (i % BLOCK_CTX == j % BLOCK_CTX),
            3: j // BLOCK_CTX == i // BLOCK_CTX - 1,
            6: np.ones((n, ENC_LEN), bool),
            7: causal & (j < PRIME_KEYS)}[kind]


def numpy_attention(layer, x, enc, kind):
    x, enc = np.float64(x), np.float64(enc)

    def dense(sub, v):
        return v @ np.float64(sub.kernel.numpy()) + np.float64(sub.bias.numpy())

    h = dense(layer.c_attn, x)
    if kind == 6:
        q, (k, v) = h, np.split(dense(layer.c_enc_kv, enc), 2, axis=-1)
    else:
        q, k, v = np.split(h, 3, axis=-1)
    mask = numpy_mask(kind, x.shape[1])
    d = N_STATE // HEADS
    heads = []
    for hd in range(HEADS):
        cols = slice(hd * d, (hd + 1) * d)
        logits = q[..., cols] @ np.swapaxes(k[..., cols], -1, -2) / np.sqrt(d)
        logits = np.where(mask, logits, -np.inf)
        peak = np.max(logits, axis=-1, keepdims=True)
        w = np.exp(logits - np.where(np.isfinite(peak), peak, 0.0))
        total = w.sum(-1, keepdims=True)
        w = np.divide(w, total, out=np.zeros_like(w), where=total > 0)  # no key: zero output
        heads.append(w @ v[..., cols])
    return dense(layer.c_proj, np.concatenate(heads, axis=-1))


@pytest.mark.parametrize("kind", KINDS)
def test_forward_matches_masked_dense_reference(kind):
    layer = make_attention(kind)
    x, enc = inputs()
    y = layer(x, encoder_kv=enc).numpy()
    np.testing.assert_allclose(y, numpy_attention(layer, x.numpy(), enc.numpy(), kind),
                               atol=1e-5, rtol=1e-5)


def test_prev_block_zero_for_first_block_and_prime_rounding():
    layer = make_attention(3)
    x, _ = inputs()
    first = layer(x)[:, :BLOCK_CTX] - layer.c_proj.bias
    np.testing.assert_array_equal(first.numpy(), 0.0)
    assert make_attention(7).prime_attn_len == PRIME_KEYS
    assert prime_attn_len(384, 64, 6528) == 448  # the 1B lyrics model


# -- (b), (c) cached sampling equals the full forward ------------------------------------------

def run_steps(layer, x, cache, jit_compile=False):
    """One token per step through tf.while_loop in a tf.function; -> [batch, n, width]."""
    n = x.shape[1]

    @tf.function(jit_compile=jit_compile)
    def steps(x, cache):
        def body(i, cache, ys):
            y, cache = layer(tf.gather(x, [i], axis=1), cache=cache, position=i)
            return i + 1, cache, ys.write(i, y[:, 0])

        ys = tf.TensorArray(x.dtype, size=n)
        _, _, ys = tf.while_loop(lambda i, *_: i < n, body, (tf.constant(0), cache, ys))
        return tf.transpose(ys.stack(), [1, 0, 2])

    return steps(x, cache).numpy()


def run_chunks(layer, x, cache, sizes):
    """Chunks of the given sizes through a tf.function; -> [batch, sum(sizes), width]."""
    step = tf.function(lambda x, cache, position: layer(x, cache=cache, position=position))
    ys, start = [], 0
    for size in sizes:
        y, cache = step(x[:, start:start + size], cache, tf.constant(start))
        ys.append(y.numpy())
        start += size
    return np.concatenate(ys, axis=1)


CHUNKS = [5] * 5 + [1] * 7  # chunks straddle block boundaries, then single steps


@pytest.mark.parametrize("kind", KINDS)
def test_cached_steps_and_chunks_match_forward(kind):
    layer = make_attention(kind)
    x, enc = inputs()
    full = layer(x, encoder_kv=enc).numpy()
    cache = layer.init_cache(BATCH, encoder_kv=enc)
    assert cache["key"].shape == (BATCH, layer.cache_len, N_STATE)
    assert layer.cache_len == {0: N_CTX, 1: BLOCK_CTX, 2: N_CTX, 3: 2 * BLOCK_CTX,
                               6: ENC_LEN, 7: PRIME_KEYS}[kind]
    assert np.abs(run_steps(layer, x, cache) - full).max() < 1e-5
    assert np.abs(run_chunks(layer, x, cache, CHUNKS) - full).max() < 1e-5


def test_transformer_cached_steps_and_chunks_match_forward():
    model = make_transformer()
    assert model.attn_kinds == MIXED_ORDER
    x, enc = inputs()
    full = model(x, encoder_kv=enc).numpy()
    cache = model.init_cache(BATCH, encoder_kv=enc)
    assert sorted(cache) == [f"block_{d}" for d in range(len(MIXED_ORDER))]
    assert np.abs(run_steps(model, x, cache, jit_compile=True) - full).max() < 1e-5
    assert np.abs(run_chunks(model, x, cache, CHUNKS) - full).max() < 1e-5
    whole = run_chunks(model, x[:, :20], cache, [20])  # priming in one go
    assert np.abs(whole - full[:, :20]).max() < 1e-5


# -- (c') priming in one blocked forward pass fills the cache as chunked steps do -------------

PRIME_LENGTHS = [0, 1, 3, 13, 22, N_CTX - 1, N_CTX]  # mostly not multiples of 4 or 5


def feed(step, x, cache, sizes, start=0):
    """step(x, cache, position) over chunks of the given sizes of x from position `start`;
    -> (outputs [batch, sum(sizes), width], cache)."""
    ys = []
    for size in sizes:
        y, cache = step(x[:, start:start + size], cache, tf.constant(start))
        ys.append(y.numpy())
        start += size
    return np.concatenate(ys, axis=1) if ys else None, cache


def chunk_sizes(length, chunk=5):
    """The sampler's chunked priming: whole chunks, then single steps."""
    return [chunk] * (length // chunk) + [1] * (length % chunk)


def assert_same_cache(got, expected):
    tf.nest.assert_same_structure(got, expected)
    for (path, a), b in zip(keras.tree.flatten_with_path(got), tf.nest.flatten(expected)):
        assert a.shape == b.shape, path
        assert np.abs(a.numpy() - b.numpy()).max() < 1e-5, path


def check_one_pass_prime(model, primes, lengths=PRIME_LENGTHS, next_steps=4):
    """Each prime(x, empty cache, length) of `primes`, given x with the positions from
    `length` on replaced by noise, against chunked steps: the same cache, and the same
    outputs for the next single steps."""
    x, enc = inputs()
    step = tf.function(lambda x, cache, position: model(x, cache=cache, position=position))
    empty = model.init_cache(BATCH, encoder_kv=enc)
    noise = tf.random.stateless_normal(x.shape, [1, 2])
    for length in lengths:
        _, chunked = feed(step, x, empty, chunk_sizes(length))
        steps = [1] * min(next_steps, N_CTX - length)
        after_chunks, _ = feed(step, x, chunked, steps, start=length)
        padded = tf.where(tf.range(x.shape[1])[None, :, None] < length, x, noise)
        for prime in primes:
            primed = prime(padded, empty, tf.constant(length))
            assert_same_cache(primed, chunked)
            if steps:
                after_prime, _ = feed(step, x, primed, steps, start=length)
                assert np.abs(after_prime - after_chunks).max() < 1e-5, length


@pytest.mark.parametrize("kind", KINDS)
def test_one_pass_prime_matches_chunked_priming(kind):
    layer = make_attention(kind)
    check_one_pass_prime(layer, [lambda x, c, n: layer(x, cache=c, prime_length=n)[1]])


def test_transformer_one_pass_prime_matches_chunked_priming():
    """Every kind in one stack, as the sampler runs it: in a tf.function, XLA-compiled or not
    (one trace for all prime lengths), and over only the blocks that hold the prime (what
    Prior.prime does outside XLA: a dynamic length)."""
    model = make_transformer()

    def prime(x, cache, length):
        return model(x, cache=cache, prime_length=length)[1]

    def whole_blocks(x, cache, length):  # at least one: the cache write gathers from x
        blocks = tf.maximum((length + BLOCK_CTX - 1) // BLOCK_CTX, 1)
        return prime(x[:, :blocks * BLOCK_CTX], cache, length)

    primes = [tf.function(prime), tf.function(prime, jit_compile=True),
              tf.function(whole_blocks)]
    check_one_pass_prime(model, primes)
    assert [p.experimental_get_tracing_count() for p in primes] == [1, 1, 1]


def test_priming_needs_a_cache_and_no_position():
    layer = make_attention(0)
    x, _ = inputs()
    for kwargs in (dict(), dict(cache=layer.init_cache(BATCH), position=tf.constant(0))):
        with pytest.raises(ValueError, match="prime_length"):
            layer(x, prime_length=3, **kwargs)
    block = ResAttnBlock(WIDTH, HEADS, N_CTX, blocks=BLOCKS)  # its training path, too
    with pytest.raises(ValueError, match="prime_length"):
        block(x, prime_length=3)


def test_cross_attention_cache_needs_encoder_output():
    with pytest.raises(ValueError, match="encoder_kv"):
        make_transformer().init_cache(BATCH)


# -- (d) serialization --------------------------------------------------------------------------

@pytest.mark.parametrize("make", [lambda: make_attention(7), lambda: make_attention(2),
                                  lambda: randomize(ResAttnBlock(
                                      WIDTH, HEADS, N_CTX, 6, blocks=BLOCKS, attn_mult=0.5,
                                      mlp_mult=2.0, afn="gelu", res_scale=0.5,
                                      encoder_dims=ENC_LEN)),
                                  make_transformer])
def test_config_round_trip(make):
    layer = make()
    x, enc = inputs()
    if not layer.built:
        layer.build((None, None, WIDTH))
        randomize(layer)
    config = json.loads(json.dumps(keras.saving.serialize_keras_object(layer)))
    clone = keras.saving.deserialize_keras_object(config)
    assert type(clone) is type(layer) and clone.get_config() == layer.get_config()
    if not clone.built:
        clone.build((None, None, WIDTH))
    clone.set_weights(layer.get_weights())
    np.testing.assert_array_equal(clone(x, encoder_kv=enc).numpy(),
                                  layer(x, encoder_kv=enc).numpy())


# -- (e) factorized kinds never build [n, n] tensors; ring caches stay block-sized ------------

def graph_shapes(fn, *specs):
    graph = tf.function(fn).get_concrete_function(*specs).graph
    return [o.shape.as_list() for op in graph.get_operations() for o in op.outputs
            if o.shape.rank is not None]


@pytest.mark.parametrize("kind", [0, 1, 2, 3])
def test_factorized_forward_is_subquadratic(kind):
    n, blocks = 64, 8
    layer = make_attention(kind, n_ctx=n, blocks=blocks)
    shapes = graph_shapes(layer, tf.TensorSpec([BATCH, n, WIDTH]))
    largest = max(int(np.prod(s)) for s in shapes if None not in s)
    quadratic = BATCH * HEADS * n * n
    if kind == 0:
        assert largest >= quadratic  # the probe sees dense logits
    else:
        assert largest <= quadratic // 4, shapes


@pytest.mark.parametrize("kind", [1, 3])
def test_ring_cache_step_never_touches_n_ctx(kind):
    n = 64
    layer = make_attention(kind, n_ctx=n)
    cache = layer.init_cache(BATCH)
    spec = tf.nest.map_structure(lambda t: tf.TensorSpec(t.shape, t.dtype), cache)
    shapes = graph_shapes(lambda x, c, p: layer(x, cache=c, position=p),
                          tf.TensorSpec([BATCH, 1, WIDTH]), spec, tf.TensorSpec([], tf.int32))
    assert max(d for s in shapes for d in s if d is not None) < n


# -- (f) parameter counts, config -------------------------------------------------------------

def test_small_transformer_parameter_count():
    config = get_preset("small")
    model = Transformer.from_prior_config(config)
    model.build((None, None, config.width))
    assert model.count_params() == count_transformer_params(config) == 794_368


def test_count_matches_built_models():
    for config in (get_preset("tiny"), PriorConfig(attn_order=(1, 6, 7), encoder_dims=4,
                                                   prime_len=3, mlp_mult=2.0)):
        model = Transformer.from_prior_config(config)
        model.build((None, None, config.width))
        assert model.count_params() == count_transformer_params(config)
    assert 4.9e9 < count_transformer_params(PRESETS["paper_top"]) < 5.1e9


# -- LayerNorm and row sums: hand-written gradients against automatic ones -------------------

def reference_layer_norm(x, gamma, beta, eps=1e-5):
    mean = tf.reduce_mean(x, -1, keepdims=True)
    var = tf.reduce_mean(tf.square(x - mean), -1, keepdims=True)
    return (x - mean) * tf.math.rsqrt(var + eps) * gamma + beta


def test_layer_norm_and_its_gradients_match_the_formula():
    rng = np.random.default_rng(3)
    # A large common offset: the two-pass variance must not lose the small spread.
    x = rng.normal(size=(2, 5, 16)) * rng.uniform(0.5, 3.0, (2, 5, 1)) + 50.0
    weight = rng.normal(size=(2, 5, 16))
    layer = LayerNorm(epsilon=1e-5)
    layer.build((None, None, 16))
    gamma, beta = rng.normal(size=16), rng.normal(size=16)
    layer.set_weights([gamma.astype(np.float32), beta.astype(np.float32)])
    x32 = tf.constant(x, tf.float32)
    with tf.GradientTape() as tape:
        tape.watch(x32)
        y = layer(x32)
        loss = tf.reduce_sum(y * weight.astype(np.float32))
    got = tape.gradient(loss, [x32, *layer.trainable_weights])
    x64 = tf.constant(x - 50.0)  # layer norm ignores the offset; float64 keeps the reference exact
    g64, b64 = tf.constant(gamma), tf.constant(beta)
    with tf.GradientTape() as tape:
        tape.watch([x64, g64, b64])
        ref = reference_layer_norm(x64, g64, b64)
        ref_loss = tf.reduce_sum(ref * weight)
    want = tape.gradient(ref_loss, [x64, g64, b64])
    np.testing.assert_allclose(y.numpy(), ref.numpy(), atol=2e-5)
    for a, b, name in zip(got, want, ("x", "gamma", "beta")):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-4, atol=1e-4, err_msg=name)


def test_layer_norm_under_bfloat16_policy():
    rng = np.random.default_rng(4)
    layer = LayerNorm(epsilon=1e-5, dtype="mixed_bfloat16")
    layer.build((None, None, 32))
    x = tf.constant(rng.normal(size=(3, 7, 32)), tf.bfloat16)
    weight = (np.arange(32, dtype=np.float32) - 16) / 16  # exact in bfloat16
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = layer(x)
        loss = tf.reduce_sum(tf.cast(y, tf.float32) * weight)
    dx, dgamma, dbeta = tape.gradient(loss, [x, *layer.trainable_weights])
    assert y.dtype == tf.bfloat16 and dx.dtype == tf.bfloat16 and dgamma.dtype == tf.float32
    ref_x = tf.cast(x, tf.float64)
    with tf.GradientTape() as tape:
        tape.watch(ref_x)
        ref = reference_layer_norm(ref_x, tf.ones(32, tf.float64), tf.zeros(32, tf.float64))
        ref_loss = tf.reduce_sum(ref * weight.astype(np.float64))
    np.testing.assert_allclose(tf.cast(y, tf.float64), ref, atol=0.03)
    np.testing.assert_allclose(tf.cast(dx, tf.float64), tape.gradient(ref_loss, ref_x), atol=0.03)
    np.testing.assert_array_equal(dbeta, 21 * weight)


def test_linear_with_folded_layer_norm_equals_linear_of_layer_norm():
    rng = np.random.default_rng(7)
    norm, dense = LayerNorm(epsilon=1e-5), Linear(12)
    norm.build((None, None, 16))
    dense.build((None, None, 16))
    for layer in (norm, dense):
        layer.set_weights([rng.normal(size=w.shape).astype(np.float32)
                           for w in layer.get_weights()])
    x = tf.constant(rng.normal(size=(2, 5, 16)) * 2 + 1, tf.float32)
    weight = rng.normal(size=(2, 5, 12)).astype(np.float32)
    results = []
    for fold in (True, False):
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = dense(x, norm=norm) if fold else dense(norm(x))
            loss = tf.reduce_sum(y * weight)
        variables = [*norm.trainable_weights, *dense.trainable_weights]
        results.append([y, *tape.gradient(loss, [x, *variables])])
    for a, b, name in zip(*results, ("y", "x", "gamma", "beta", "kernel", "bias")):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-4, atol=1e-4, err_msg=name)


@pytest.mark.parametrize("dtype", [tf.float32, tf.bfloat16])
def test_sum_rows_and_broadcast_rows_gradient(dtype):
    rng = np.random.default_rng(5)
    x = rng.integers(-4, 5, size=(3, 37, 6)).astype(np.float32)  # exact in bfloat16 sums
    np.testing.assert_array_equal(tf.cast(sum_rows(tf.constant(x, dtype)), tf.float32),
                                  x.sum((0, 1)))
    v = tf.Variable(tf.zeros(6, dtype))
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(broadcast_rows(v, tf.constant([3, 37, 6])) * tf.constant(x, dtype))
    np.testing.assert_array_equal(tf.cast(tape.gradient(loss, v), tf.float32), x.sum((0, 1)))


def test_recompute_gives_same_gradients():
    x, enc = inputs(n=16)
    grads = []
    for recompute in (False, True):
        model = make_transformer(n_ctx=16, recompute=recompute)
        with tf.GradientTape() as tape:
            loss = tf.reduce_sum(model(x[:, :16], encoder_kv=enc) ** 2)
        grads.append([g.numpy() for g in tape.gradient(loss, model.trainable_weights)])
    for a, b in zip(*grads):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)


def test_config_orders_presets_and_validation():
    kinds_10 = attn_kinds(10, 79)
    assert kinds_10[:9] == (1, 2, 3) * 3 and kinds_10.count(6) == 7 and kinds_10[18] == 6
    kinds_12 = attn_kinds(12, 72)
    assert [kinds_12[d] for d in (15, 31, 47, 63)] == [7, 7, 0, 7]
    assert set(kinds_12) - {7, 0} == {1, 2, 3}
    assert get_preset("small").block_ctx == 64 and get_preset("paper_1b_lyrics").block_ctx == 102
    for config in PRESETS.values():
        assert PriorConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config
    for bad, message in [(dict(n_ctx=60), "divisible by blocks"),
                         (dict(heads=3), "divisible by heads"),
                         (dict(attn_order=6, depth=4), "encoder_dims"),
                         (dict(attn_order=12, depth=16), "prime_len"),
                         (dict(attn_order=5), "attn_order"),
                         (dict(afn="tanh"), "afn")]:
        with pytest.raises(ValueError, match=message):
            PriorConfig(**bad)
