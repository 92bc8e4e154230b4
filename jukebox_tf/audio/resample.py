"""Band-limited resampling (libsoxr, the SoX 'HQ' polyphase filter), one-shot or streaming.

Streaming keeps the filter state between blocks, so a several-hours file resamples block by
block to exactly the samples a one-shot resample would give, in bounded memory.
"""

from __future__ import annotations

import numpy as np
import soxr

from jukebox_tf.audio.decode import AudioError

# Outside this range a file's rate is a broken header rather than audio we can filter sensibly.
MIN_RATE = 2000
MAX_RATE = 768000
QUALITY = "HQ"


def check_rate(rate: int) -> None:
    if not MIN_RATE <= rate <= MAX_RATE:
        raise AudioError(f"sample rate {rate} Hz is outside the resampler's supported range "
                         f"{MIN_RATE}-{MAX_RATE} Hz")


def output_length(frames: int, in_rate: int, out_rate: int) -> int:
    return int(round(frames * out_rate / in_rate))


def resample(audio: np.ndarray, in_rate: int, out_rate: int) -> np.ndarray:
    """audio: float32 [frames] or [frames, channels] -> the same at out_rate."""
    check_rate(in_rate)
    check_rate(out_rate)
    if in_rate == out_rate:
        return audio.astype(np.float32, copy=False)
    return soxr.resample(audio.astype(np.float32, copy=False), in_rate, out_rate,
                         quality=QUALITY)


class StreamResampler:
    """Resamples consecutive [n, channels] blocks; `flush()` returns the filter's tail."""

    def __init__(self, in_rate: int, out_rate: int, channels: int):
        check_rate(in_rate)
        check_rate(out_rate)
        self.channels = channels
        self._stream = None if in_rate == out_rate else soxr.ResampleStream(
            in_rate, out_rate, channels, dtype="float32", quality=QUALITY)

    def process(self, block: np.ndarray) -> np.ndarray:
        if self._stream is None:
            return block
        return self._stream.resample_chunk(np.ascontiguousarray(block, dtype=np.float32))

    def flush(self) -> np.ndarray:
        empty = np.zeros((0, self.channels), np.float32)
        if self._stream is None:
            return empty
        return self._stream.resample_chunk(empty, last=True)
