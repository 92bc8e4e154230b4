"""Whole-file audio in and out, for single files (prompts, reconstructions, samples).

Datasets go through `ingest`, which streams; these helpers hold one file in memory.
"""

from __future__ import annotations

import os
import sys
from typing import Callable

import numpy as np
import soundfile

from jukebox_tf.audio.decode import AudioReader
from jukebox_tf.audio.records import AtomicWriter
from jukebox_tf.audio.resample import StreamResampler

BLOCK_SECONDS = 8


def to_channels(block: np.ndarray, channels: int) -> np.ndarray:
    """[n, c] -> [n, channels]: mean to mono, duplicate mono to stereo, keep the first two."""
    if channels == 1:
        if block.shape[1] == 1:
            return block
        # A matmul, not mean(axis=1): numpy's strided row reduction is 20x slower here and was
        # a fifth of the whole ingest time on stereo music.
        return block @ np.full((block.shape[1], 1), 1.0 / block.shape[1], np.float32)
    if block.shape[1] == 1:
        return np.repeat(block, 2, axis=1)
    return block[:, :2]


def _warn(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr)


def load_audio(path: str, sample_rate: int, channels: int = 1,
               max_seconds: float | None = None, strict: bool = False,
               warn: Callable[[str], None] = _warn) -> np.ndarray:
    """Decodes, mixes and resamples a file: float32 [frames, channels] at `sample_rate`.

    Raises AudioError with a one-line reason for files that cannot be used. A truncated file
    gives what decodes, and `warn("PATH: reason; kept ...")` (AudioError when `strict`).
    """
    with AudioReader(path, strict=strict) as reader:
        info = reader.info
        resampler = StreamResampler(info.sample_rate, sample_rate, channels)
        limit = None if max_seconds is None else int(max_seconds * info.sample_rate)
        parts, taken = [], 0
        for block in reader.blocks(BLOCK_SECONDS * info.sample_rate):
            if limit is not None:
                block = block[:limit - taken]
            taken += len(block)
            parts.append(resampler.process(to_channels(block, channels)))
            if limit is not None and taken >= limit:
                break
        parts.append(resampler.flush())
        for flag in reader.flags:
            warn(f"{path}: {flag}")
    return np.concatenate(parts).astype(np.float32)


def write_wav(path: str, audio: np.ndarray, sample_rate: int) -> str:
    """Writes float audio [frames] or [frames, channels] as 16-bit WAV, atomically."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with AtomicWriter(path) as f:
        soundfile.write(f, np.clip(audio, -1.0, 1.0), sample_rate, format="WAV",
                        subtype="PCM_16")
    return path
