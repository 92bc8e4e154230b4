"""Spectral losses and metrics against numpy implementations of the original's definitions."""

import numpy as np
import pytest
import tensorflow as tf

from jukebox_tf.vqvae import losses


def np_stft_mag(x, n_fft, hop, window):
    """torch.stft(center=True) framing: reflect-pad, periodic Hann of `window` samples
    centred in an n_fft FFT. x [T] -> [frames, bins]."""
    pad = window // 2
    xp = np.pad(x, pad, mode="reflect")
    w = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(window) / window)  # periodic Hann
    frames = 1 + (len(xp) - window) // hop
    out = []
    for t in range(frames):
        seg = xp[t * hop:t * hop + window] * w
        out.append(np.abs(np.fft.rfft(seg, n_fft)))
    return np.array(out)


def signals(seed=0, batch=2, length=8192):
    rng = np.random.RandomState(seed)
    t = np.arange(length) / 22050
    x = 0.5 * np.sin(2 * np.pi * 440 * t)[None] + 0.05 * rng.randn(batch, length)
    y = x + 0.02 * rng.randn(batch, length)
    return x.astype(np.float32), y.astype(np.float32)


@pytest.mark.parametrize("n_fft,hop,window", [(2048, 240, 1200), (512, 50, 240),
                                              (2048, 256, 1536)])
def test_stft_magnitude_matches_numpy(n_fft, hop, window):
    x, _ = signals()
    got = losses.stft_magnitude(tf.constant(x), n_fft, hop, window).numpy()
    ref = np_stft_mag(x[0], n_fft, hop, window)
    assert got.shape == (2,) + ref.shape == (2, 1 + 8192 // hop, n_fft // 2 + 1)
    np.testing.assert_allclose(got[0], ref, rtol=1e-3, atol=1e-3)


def test_spectral_convergence_matches_numpy():
    x, y = signals(1)
    got = losses.spectral_convergence(tf.constant(x), tf.constant(y)).numpy()
    for i in range(2):
        s, s_hat = np_stft_mag(x[i], 2048, 256, 1536), np_stft_mag(y[i], 2048, 256, 1536)
        np.testing.assert_allclose(got[i], np.linalg.norm(s - s_hat) / np.linalg.norm(s),
                                   rtol=1e-4)
    assert losses.spectral_convergence(tf.constant(x), tf.constant(x)).numpy().max() < 1e-6
    silent = np.zeros_like(x)
    np.testing.assert_array_equal(
        losses.spectral_convergence(tf.constant(silent), tf.constant(y)).numpy(), 0.0)
    np.testing.assert_allclose(losses.to_db(tf.constant(0.1)).numpy(), -20.0, rtol=1e-6)


def test_multispectral_loss_matches_numpy():
    x, y = signals(2)
    configs = ((2048, 1024, 512), (240, 120, 50), (1200, 600, 240))
    got = losses.multispectral_loss(tf.constant(x[..., None]), tf.constant(y[..., None]),
                                    *configs).numpy()
    for i in range(2):
        ref = np.mean([np.linalg.norm(np_stft_mag(x[i], n, h, w) - np_stft_mag(y[i], n, h, w))
                       for n, h, w in zip(*configs)])
        np.testing.assert_allclose(got[i], ref, rtol=1e-3)


def test_lmix_loss_matches_numpy():
    x, y = signals(3)
    err = (x - y) ** 2
    topk = np.sort(err, axis=1)[:, ::-1][:, :100].mean()
    got = losses.lmix_loss(tf.constant(x), tf.constant(y), 0.5, 1.0, 0.02, 100).numpy()
    np.testing.assert_allclose(got, (err.mean() + 0.02 * topk) / 0.5, rtol=1e-5)


def test_data_statistics_match_numpy():
    x, y = signals(4)
    stats = losses.data_statistics([x, y[..., None]])
    both = np.concatenate([x, y]).astype(np.float64)
    np.testing.assert_allclose(stats["l2"], both.var(), rtol=1e-6)
    np.testing.assert_allclose(stats["l1"], np.abs(both).mean(), rtol=1e-6)
    spec = np.mean([np.linalg.norm(np_stft_mag(s, 2048, 256, 1536)) for s in both])
    np.testing.assert_allclose(stats["spec"], spec, rtol=1e-3)
    with pytest.raises(ValueError, match="no audio"):
        losses.data_statistics([])
