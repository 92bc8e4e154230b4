"""The lean conv layers equal Keras' own, forward and backward."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from jukebox_tf.layers import conv
from jukebox_tf.layers.conv import Conv1D, Conv1DTranspose


def tap_sum_conv(x, kernel, bias, dilation):
    """The 'same' stride-1 dilated conv as a sum of shifted matmuls: a reference whose gradient
    needs no conv kernel (without oneDNN, TensorFlow's CPU kernels cannot differentiate a
    dilated conv, Keras' included)."""
    k, length = kernel.shape[0], x.shape[1]
    pad = (k - 1) // 2 * dilation
    padded = tf.pad(x, [[0, 0], [pad, pad], [0, 0]])
    return bias + sum(tf.einsum("bti,io->bto", padded[:, j * dilation:j * dilation + length],
                                kernel[j]) for j in range(k))


@pytest.mark.parametrize("dilation", [3, 9])
def test_tap_sum_reference_equals_keras_forward(dilation):
    rng = np.random.RandomState(dilation)
    x = tf.constant(rng.randn(2, 64, 5).astype(np.float32))
    ref = keras.layers.Conv1D(7, 3, dilation_rate=dilation, padding="same")
    ref.build(x.shape)
    np.testing.assert_allclose(tap_sum_conv(x, ref.kernel, ref.bias, dilation).numpy(),
                               ref(x).numpy(), rtol=1e-5, atol=1e-5)


# With oneDNN, the input gradient of a dilated conv is TensorFlow's dilated transposed conv;
# without, it is folded (the only one that runs there), which every host checks.
@pytest.mark.parametrize("onednn", [True, False] if conv.ONEDNN else [False])
@pytest.mark.parametrize("kernel,stride,dilation", [(3, 1, 1), (3, 1, 9), (3, 1, 27), (1, 1, 1),
                                                    (4, 2, 1)])
def test_conv1d_matches_keras(kernel, stride, dilation, onednn, monkeypatch):
    monkeypatch.setattr(conv, "ONEDNN", onednn)
    rng = np.random.RandomState(kernel + dilation)
    x = tf.constant(rng.randn(2, 256, 5).astype(np.float32))
    ours = Conv1D(7, kernel, strides=stride, dilation_rate=dilation)
    ref = keras.layers.Conv1D(7, kernel, strides=stride, dilation_rate=dilation, padding="same")
    ours.build(x.shape)
    ref.build(x.shape)
    ours.kernel.assign(rng.randn(*ours.kernel.shape).astype(np.float32))
    ours.bias.assign(rng.randn(7).astype(np.float32))
    ref.set_weights([ours.kernel.numpy(), ours.bias.numpy()])
    if dilation > 1:
        ref_call = lambda x: tap_sum_conv(x, ref.kernel, ref.bias, dilation)  # noqa: E731
    else:
        ref_call = ref
    w = tf.constant(rng.randn(2, 256 // stride, 7).astype(np.float32))
    grads = []
    for layer, call in ((ours, ours), (ref, ref_call)):
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = call(x)
            loss = tf.reduce_sum(y * w)
        grads.append([y] + tape.gradient(loss, [x, layer.kernel.value, layer.bias.value]))
    assert tuple(ours.compute_output_shape(x.shape)) == tuple(grads[0][0].shape)
    for a, b in zip(*grads):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("dilation", [1, 9])
def test_bfloat16_conv1d_matches_float32(dilation):
    # Mixed precision takes oneDNN's own dilated gradient (without oneDNN the folded one),
    # float32 the folded one.
    rng = np.random.RandomState(dilation)
    x = tf.constant(rng.randn(2, 256, 16).astype(np.float32))
    w = tf.constant(rng.randn(2, 256, 8).astype(np.float32))
    full, mixed = (Conv1D(8, 3, dilation_rate=dilation, dtype=policy)
                   for policy in ("float32", "mixed_bfloat16"))
    full.build(x.shape)
    mixed.build(x.shape)
    mixed.set_weights(full.get_weights())
    results = []
    for layer in (full, mixed):
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = layer(x)
            loss = tf.reduce_sum(tf.cast(y, tf.float32) * w)
        results.append((y.dtype, [tf.cast(t, tf.float32).numpy() for t in [y] + tape.gradient(
            loss, [x, layer.kernel.value])]))
    assert [dtype for dtype, _ in results] == [tf.float32, tf.bfloat16]
    for a, b in zip(results[0][1], results[1][1]):  # bfloat16 keeps 8 bits of mantissa
        np.testing.assert_allclose(b, a, atol=0.03 * np.abs(a).max())


def test_conv1d_transpose_matches_keras():
    rng = np.random.RandomState(0)
    x = tf.constant(rng.randn(2, 64, 5).astype(np.float32))
    ours, ref = Conv1DTranspose(3, 4, strides=2), keras.layers.Conv1DTranspose(
        3, 4, strides=2, padding="same")
    ours.build(x.shape)
    ref.build(x.shape)
    ref.set_weights([ours.kernel.numpy(), rng.randn(3).astype(np.float32)])
    ours.bias.assign(ref.bias.numpy())
    np.testing.assert_allclose(ours(x).numpy(), ref(x).numpy(), rtol=1e-5, atol=1e-5)
    assert ours(x).shape == (2, 128, 3)


@pytest.mark.parametrize("stride,kernel", [(2, 4), (3, 6), (2, 3)])
def test_conv1d_transpose_matches_tf_forward_and_backward(stride, kernel):
    # kernel == 2 * stride runs as a forward conv over phases (_phase_kernel); others as
    # tf's transposed conv.
    rng = np.random.RandomState(stride + kernel)
    x = tf.constant(rng.randn(2, 40, 5).astype(np.float32))
    layer = Conv1DTranspose(3, kernel, strides=stride)
    layer.build(x.shape)
    layer.bias.assign(rng.randn(3).astype(np.float32))
    w = tf.constant(rng.randn(2, 40 * stride, 3).astype(np.float32))
    results = []
    for fn in (layer, lambda x: tf.nn.conv1d_transpose(
            x, layer.kernel, [2, 40 * stride, 3], stride, "SAME") + layer.bias):
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = fn(x)
            loss = tf.reduce_sum(y * w)
        results.append([y] + tape.gradient(loss, [x, layer.kernel.value, layer.bias.value]))
    for a, b in zip(*results):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("layer", [Conv1D(6, 3, dilation_rate=9), Conv1D(6, 4, strides=2),
                                   Conv1D(6, 1), Conv1DTranspose(6, 4, strides=2)],
                         ids=["dilated", "strided", "1x1", "transposed"])
def test_time_as_width_inputs_give_the_3d_result(layer):
    # Encoders and decoders run their layers on [B, 1, T, C] (conv.py).
    x = tf.constant(np.random.RandomState(1).randn(2, 64, 4).astype(np.float32))
    flat = layer(x)
    wide = layer(tf.expand_dims(x, 1))
    assert wide.shape == (2, 1) + tuple(flat.shape[1:])
    np.testing.assert_allclose(wide[:, 0].numpy(), flat.numpy(), rtol=1e-6, atol=1e-6)


def test_config_round_trip():
    layer = Conv1D(8, 3, dilation_rate=3, name="c")
    assert Conv1D.from_config(layer.get_config()).get_config() == layer.get_config()
