"""The VQ-VAE's architecture against the original's parameter counts, shapes per level, and
Keras serialization."""

import numpy as np
import pytest
import keras
import tensorflow as tf

from jukebox_tf.training import global_dtype_policy
from jukebox_tf.vqvae import get_preset
from jukebox_tf.vqvae.config import VQVAEConfig
from jukebox_tf.vqvae.vqvae import VQVAE, build_vqvae


def count(layer):
    return sum(int(np.prod(v.shape)) for v in layer.trainable_variables)


def test_small_preset_matches_the_original_parameter_counts():
    model = build_vqvae(get_preset("small"))
    assert [count(e) for e in model.encoders] == [64544, 116384, 168224]
    assert [count(d) for d in model.decoders] == [72801, 124641, 176481]
    assert count(model) == 723075
    codebooks = [b.k for b in model.bottlenecks]
    assert [tuple(k.shape) for k in codebooks] == [(512, 64)] * 3
    assert all(not k.trainable for k in codebooks)


def test_paper_preset_hops_and_parameter_count():
    config = get_preset("paper")
    assert config.hop_lengths == (8, 32, 128)
    assert [config.sample_rate // h for h in config.hop_lengths] == [5512, 1378, 344]
    model = build_vqvae(config)
    assert count(model) == 1485763
    assert tuple(model.bottlenecks[0].k.shape) == (2048, 64)


def test_dilations_grow_by_three_and_decoders_reverse_them():
    model = build_vqvae(get_preset("small"))
    enc_resnet = model.encoders[0].level_blocks[0].stages[1]
    dec_resnet = model.decoders[0].level_blocks[0].stages[1]
    assert enc_resnet.dilations == [1, 3, 9, 27]
    assert dec_resnet.dilations == [27, 9, 3, 1]


@pytest.fixture(scope="module")
def tiny():
    return build_vqvae(get_preset("tiny"))


def test_shapes_per_level(tiny):
    x = np.random.RandomState(0).randn(2, 4096, 1).astype(np.float32) * 0.1
    codes = tiny.encode(x)
    assert [tuple(c.shape) for c in codes] == [(2, 512), (2, 128), (2, 32)]
    assert all(c.dtype == tf.int32 for c in codes)
    assert all(int(tf.reduce_max(c)) < 64 for c in codes)
    for level, c in enumerate(codes):
        assert tuple(tiny.decode(c, level).shape) == (2, 4096, 1)
    assert [tuple(c.shape) for c in tiny.encode(x[..., 0], levels=[2])] == [(2, 32)]
    out = tiny(x, training=False)
    assert [tuple(r.shape) for r in out["reconstructions"]] == [(2, 4096, 1)] * 3
    for level in range(3):
        np.testing.assert_array_equal(out["codes"][level].numpy(), codes[level].numpy())
        for name in ("recons_loss", "spectral_loss", "commit_loss", "spectral_convergence_db",
                     "usage", "entropy_bits", "perplexity"):
            assert np.isfinite(out["metrics"][f"{name}/l{level}"].numpy())
    total = (out["metrics"]["recons_loss"] + out["metrics"]["spectral_loss"]
             + 0.02 * out["metrics"]["commit_loss"])
    np.testing.assert_allclose(out["loss"].numpy(), total.numpy(), rtol=1e-5)


def test_keras_serialization_round_trip(tiny, tmp_path):
    x = np.random.RandomState(1).randn(1, 2048, 1).astype(np.float32) * 0.1
    tiny(x, training=True)  # initialise the codebooks from data
    tiny.set_data_statistics({"l2": 0.01, "l1": 0.08, "spec": 12.0})
    config = keras.saving.serialize_keras_object(tiny)
    clone = keras.saving.deserialize_keras_object(config)
    assert isinstance(clone, VQVAE) and clone.config == tiny.config
    path = str(tmp_path / "tiny.keras")
    tiny.save(path)
    loaded = keras.saving.load_model(path)
    assert loaded.data_statistics() == pytest.approx({"l2": 0.01, "l1": 0.08, "spec": 12.0})
    for level in range(3):
        codes = tiny.encode(x, levels=[level])[0]
        np.testing.assert_array_equal(loaded.encode(x, levels=[level])[0].numpy(),
                                      codes.numpy())
        np.testing.assert_allclose(loaded.decode(codes, level).numpy(),
                                   tiny.decode(codes, level).numpy(), atol=1e-6)
    for layer in (tiny.encoders[0], tiny.decoders[1], tiny.bottlenecks[2]):
        restored = layer.__class__.from_config(layer.get_config())
        assert restored.get_config() == layer.get_config()


def test_config_validation_and_dict_round_trip():
    config = get_preset("small")
    assert VQVAEConfig.from_dict(config.to_dict()) == config
    with pytest.raises(ValueError, match="unknown VQ-VAE config field"):
        VQVAEConfig.from_dict({"bogus": 1})
    with pytest.raises(ValueError, match="not a multiple of the top hop length 128"):
        VQVAEConfig(sample_length=1000)
    with pytest.raises(ValueError, match="unknown VQ-VAE preset"):
        get_preset("huge")


def test_mixed_bfloat16_model_computes_in_bfloat16_with_float32_losses(tiny):
    x = np.random.RandomState(2).randn(2, 4096, 1).astype(np.float32) * 0.1
    tiny(x, training=True)  # codebooks from data
    tiny.set_data_statistics({"l2": 0.01, "l1": 0.08, "spec": 12.0})
    with global_dtype_policy("mixed_bfloat16"):  # as the training loop does
        mixed = build_vqvae(get_preset("tiny"))
    mixed.set_weights(tiny.get_weights())
    assert mixed.decoders[0].compute_dtype == "bfloat16"
    assert mixed.bottlenecks[0].compute_dtype == "float32"
    # The loss normalisers are read in float32, not rounded to bfloat16's 8 bits.
    assert mixed.data_statistics() == pytest.approx({"l2": 0.01, "l1": 0.08, "spec": 12.0})
    full, half = tiny(x, training=False), mixed(x, training=False)
    assert half["loss"].dtype == tf.float32
    assert all(r.dtype == tf.float32 for r in half["reconstructions"])
    np.testing.assert_allclose(half["loss"].numpy(), full["loss"].numpy(), rtol=0.05)
    for level, codes in enumerate(full["codes"]):  # bfloat16 may pick a neighbouring code
        ref = tiny.decode(codes, level).numpy()
        np.testing.assert_allclose(tf.cast(mixed.decode(codes, level), tf.float32).numpy(), ref,
                                   atol=0.03 * np.abs(ref).max())


def test_every_relu_reads_a_fusable_conv_output(tiny):
    # Encoders and decoders run 4-D, so that grappler fuses conv, bias and ReLU; the residual
    # ReLUs are Maximum ops (residual_relu), which it leaves alone.
    x = tf.constant(np.zeros((1, 1024, 1), np.float32))
    for training in (False, True):
        graph = tf.function(lambda x: tiny(x, training=training)["loss"]).get_concrete_function(
            x).graph
        ops = graph.get_operations()
        assert {op.inputs[0].op.type for op in ops if op.type == "Relu"} == {"BiasAdd"}
        assert sum(op.type == "Maximum" for op in ops) >= 60  # one per residual block


@pytest.mark.parametrize("dtype", [tf.float32, tf.bfloat16])
def test_residual_relu_is_relu_forward_and_backward(dtype):
    from jukebox_tf.layers.resnet import residual_relu

    x = tf.constant(np.array([-2.0, -0.5, 0.0, 0.25, 3.0], np.float32), dtype)
    w = tf.constant(np.array([1.0, 2.0, 3.0, 4.0, 5.0], np.float32), dtype)
    results = []
    for fn in (residual_relu, tf.nn.relu):
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = fn(x)
            loss = tf.reduce_sum(y * w)
        results.append((y, tape.gradient(loss, x)))
    for a, b in zip(*results):
        assert a.dtype == dtype
        np.testing.assert_array_equal(tf.cast(a, tf.float32).numpy(),
                                      tf.cast(b, tf.float32).numpy())
