"""Log-magnitude spectrograms as numbers and as PNG pictures (for people, not for losses)."""

from __future__ import annotations

import os
from typing import Sequence

import numpy as np

from jukebox_tf.audio.records import AtomicWriter


def log_spectrogram(audio: np.ndarray, n_fft: int = 1024, hop: int = 256,
                    floor_db: float = -100.0) -> np.ndarray:
    """audio [samples] (or [samples, channels], mixed to mono) -> dB [frames, n_fft // 2 + 1].

    Hann-windowed STFT, magnitudes in dB relative to a full-scale sine (0 dB).
    """
    audio = np.asarray(audio, np.float32)
    if audio.ndim == 2:
        audio = audio.mean(axis=1)
    if len(audio) < n_fft:
        audio = np.pad(audio, (0, n_fft - len(audio)))
    frames = 1 + (len(audio) - n_fft) // hop
    index = np.arange(n_fft)[None, :] + hop * np.arange(frames)[:, None]
    window = np.hanning(n_fft).astype(np.float32)
    magnitude = np.abs(np.fft.rfft(audio[index] * window, axis=1)) * 2 / window.sum()
    return np.maximum(20 * np.log10(np.maximum(magnitude, 1e-10)), floor_db)


def render_spectrograms_png(items: Sequence[tuple[str, np.ndarray]], sample_rate: int,
                            n_fft: int = 1024, hop: int = 256) -> bytes:
    """One spectrogram panel per (title, audio), stacked vertically, as PNG bytes."""
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(items), 1, figsize=(10, 2.2 * len(items)), squeeze=False,
                             layout="constrained")
    for ax, (title, audio) in zip(axes[:, 0], items):
        spec = log_spectrogram(audio, n_fft, hop)
        seconds = len(audio) / sample_rate
        image = ax.imshow(spec.T, origin="lower", aspect="auto", cmap="magma", vmin=-100,
                          vmax=0, extent=(0, seconds, 0, sample_rate / 2000))
        ax.set_title(title, fontsize=9)
        ax.set_ylabel("kHz")
    axes[-1, 0].set_xlabel("seconds")
    fig.colorbar(image, ax=axes[:, 0].tolist(), label="dB", shrink=0.8)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=90)
    plt.close(fig)
    return buffer.getvalue()


def save_spectrograms_png(path: str, items: Sequence[tuple[str, np.ndarray]], sample_rate: int,
                          n_fft: int = 1024, hop: int = 256) -> str:
    """`render_spectrograms_png` written to `path` atomically."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with AtomicWriter(path) as f:
        f.write(render_spectrograms_png(items, sample_rate, n_fft, hop))
    return path
