"""Cutting a stream of audio blocks into fixed-length, possibly overlapping chunks.

Only the frames not yet emitted are buffered (at most one chunk plus one block), so a track
of any length is chunked in bounded memory.
"""

from __future__ import annotations

from typing import Iterator

import numpy as np


class Chunker:
    """Feeds [n, channels] blocks in, yields (offset, chunk [chunk_frames, channels]).

    Chunks start every `hop_frames` (hop <= chunk: no gaps). At the end, frames not covered by
    a full chunk form one shorter last chunk if at least `min_frames` long, or if the track is
    shorter than one chunk.
    """

    def __init__(self, chunk_frames: int, hop_frames: int | None = None, min_frames: int = 1):
        hop_frames = hop_frames or chunk_frames
        if not 0 < hop_frames <= chunk_frames:
            raise ValueError(f"hop ({hop_frames} frames) must be in (0, chunk = "
                             f"{chunk_frames} frames]")
        self.chunk_frames = chunk_frames
        self.hop_frames = hop_frames
        self.min_frames = max(1, min_frames)
        self._buffer: np.ndarray | None = None
        self._buffer_start = 0  # track frame index of self._buffer[0]
        self._covered = 0  # frames [0, covered) are in an emitted chunk

    def push(self, block: np.ndarray) -> Iterator[tuple[int, np.ndarray]]:
        self._buffer = block if self._buffer is None else np.concatenate([self._buffer, block])
        while len(self._buffer) >= self.chunk_frames:
            yield self._buffer_start, self._buffer[:self.chunk_frames]
            self._covered = self._buffer_start + self.chunk_frames
            self._buffer = self._buffer[self.hop_frames:]
            self._buffer_start += self.hop_frames

    def finish(self) -> Iterator[tuple[int, np.ndarray]]:
        if self._buffer is None:
            return
        end = self._buffer_start + len(self._buffer)
        uncovered = end - self._covered
        if uncovered > 0 and (uncovered >= self.min_frames or self._covered == 0):
            yield self._buffer_start, self._buffer
        self._buffer = None
