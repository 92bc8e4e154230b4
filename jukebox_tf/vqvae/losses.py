"""Reconstruction losses and metrics of the VQ-VAE, with `tf.signal`.

STFT framing follows the original (torch.stft, center=True): frame t is centred on sample
t * hop, `window` samples wide with a Hann window, zero-padded to `n_fft` for the FFT; the
signal is reflect-padded by window // 2 at both ends. So frame count is 1 + T // hop and the
numbers (losses, spectral convergence in dB) compare with the original's.

Losses are normalised by data statistics computed once from the training data
(`data_statistics`): the sample variance for the sample-level terms, the mean spectral norm for
the spectral term.
"""

from __future__ import annotations

import math
from typing import Iterable

import numpy as np
import tensorflow as tf

# The original's DefaultSTFTValues: spectral convergence and the spectral-norm statistic.
SC_N_FFT, SC_HOP, SC_WINDOW = 2048, 256, 1536


def stft_magnitude(x, n_fft: int, hop: int, window: int):
    """x [B, T] -> |STFT| [B, 1 + T // hop, n_fft // 2 + 1]."""
    x = tf.pad(x, [[0, 0], [window // 2, window // 2]], mode="REFLECT")
    frames = tf.signal.stft(x, frame_length=window, frame_step=hop, fft_length=n_fft,
                            window_fn=tf.signal.hann_window, pad_end=False)
    return tf.abs(frames)


def _mono(x):
    """[B, T, C] or [B, T] -> [B, T] (channel mean)."""
    x = tf.convert_to_tensor(x, tf.float32)
    return tf.reduce_mean(x, axis=-1) if x.shape.rank == 3 else x


def _norm(x):
    """Per-example Frobenius norm: [B, ...] -> [B]."""
    return tf.sqrt(tf.reduce_sum(tf.square(tf.reshape(x, [tf.shape(x)[0], -1])), 1))


def multispectral_loss(target, output, n_ffts, hops, windows):
    """Mean over STFT resolutions of |(|S_target| - |S_output|)|_F, per example: [B]."""
    target, output = _mono(target), _mono(output)
    losses = [_norm(stft_magnitude(target, n, h, w) - stft_magnitude(output, n, h, w))
              for n, h, w in zip(n_ffts, hops, windows)]
    return tf.add_n(losses) / len(losses)


def spectral_convergence(target, output, epsilon: float = 2e-3):
    """|S - S_hat|_F / |S|_F per example [B] (0 where the target is silent)."""
    spec = stft_magnitude(_mono(target), SC_N_FFT, SC_HOP, SC_WINDOW)
    spec_hat = stft_magnitude(_mono(output), SC_N_FFT, SC_HOP, SC_WINDOW)
    gt = _norm(spec)
    residual = _norm(spec - spec_hat)
    return residual * tf.cast(gt > epsilon, tf.float32) / tf.maximum(gt, epsilon)


def to_db(ratio):
    return 20.0 * tf.math.log(tf.maximum(ratio, 1e-10)) / math.log(10.0)


def lmix_loss(target, output, l2_scale, l2_weight: float, linf_weight: float, linf_k: int):
    """l2_weight * mean squared error + linf_weight * mean of the top-k squared errors per
    example, both divided by the data variance `l2_scale`: scalar."""
    err = tf.square(tf.reshape(tf.cast(target, tf.float32) - tf.cast(output, tf.float32),
                               [tf.shape(target)[0], -1]))
    l2 = tf.reduce_mean(err)
    k = min(linf_k, err.shape[1]) if err.shape[1] is not None else linf_k
    linf = tf.reduce_mean(tf.math.top_k(err, k=k).values)
    return (l2_weight * l2 + linf_weight * linf) / l2_scale


def data_statistics(batches: Iterable[np.ndarray]) -> dict:
    """The normalisers of the losses, from training audio [B, T] or [B, T, C] batches:
    l2 (variance), l1 (mean |x|), spec (mean spectral norm per example)."""
    total = total_sq = l1 = n = 0.0
    spec_total, spec_count = 0.0, 0
    for batch in batches:
        batch = np.asarray(batch, np.float64)
        total += batch.sum()
        total_sq += np.square(batch).sum()
        l1 += np.abs(batch).sum()
        n += batch.size
        spec = stft_magnitude(_mono(batch.astype(np.float32)), SC_N_FFT, SC_HOP, SC_WINDOW)
        spec_total += float(tf.reduce_sum(_norm(spec)))
        spec_count += batch.shape[0]
    if n == 0:
        raise ValueError("no audio to compute data statistics from")
    mean = total / n
    return {"l2": max(total_sq / n - mean ** 2, 1e-8), "l1": max(l1 / n, 1e-8),
            "spec": max(spec_total / spec_count, 1e-8)}
