"""Sound before the whole piece is sampled: the levels sampled window by window on demand, and
the lowest level's audio decoded as its codes become final.

`interleave` runs each level's `windowed.level_windows` lazily: a window of a level below
first asks the level above for the codes it reads, so the first window of the lowest level
comes after one window or so of each level above instead of after all of them. Every window
sees the inputs it would see level after level, so the codes are the same.

`ProgressiveDecoder` turns the growing codes into audio equal to decoding the whole piece at
once: a decoder output depends on the codes within its receptive field only (measured once,
`receptive_field`), so audio is emitted up to that far before the last final code, decoded
with that much context on each side. `AudioStream` appends it to a WAV per sample, for
`sample --stream` (decoding in process) and `generate --stream` (through the server).
"""

from __future__ import annotations

import os
from typing import Callable, Iterator

import numpy as np


class _LazyLevel:
    """A level's codes, sampled as far as asked: `codes` int32 [B, total] holds the first
    `filled` columns."""

    def __init__(self, windows: Iterator[np.ndarray], batch: int, total: int):
        self.windows, self.codes, self.filled = windows, np.zeros([batch, total], np.int32), 0
        self.pull()  # the prime (maybe empty): the generator checks its arguments here

    def pull(self) -> bool:
        """One more window; False when the level is complete."""
        try:
            codes = next(self.windows)
        except StopIteration:
            return False
        self.codes[:, :codes.shape[1]] = codes
        self.filled = codes.shape[1]
        return True

    def ensure(self, n: int) -> None:
        while self.filled < n:
            if not self.pull():
                raise RuntimeError(f"level complete at {self.filled} codes, {n} asked for")


def interleave(jobs, batch: int, on_lowest: Callable[[np.ndarray], None]) -> dict:
    """jobs: [(level, make_windows(upper_codes, upper_ready) -> level_windows iterator,
    total tokens)] from the top down, a level's upper level being the job before it (or, for
    the first job, `upper` of its own make_windows' closure). Returns {level: codes int32
    [B, total]}; on_lowest(codes so far) after each window of the last job's level."""
    lazy = {}
    above = None
    for level, make_windows, total in jobs:
        windows = make_windows(None if above is None else above.codes,
                               None if above is None else above.ensure)
        above = lazy[level] = _LazyLevel(windows, batch, total)
    lowest = above
    on_lowest(lowest.codes[:, :lowest.filled])
    while lowest.pull():
        on_lowest(lowest.codes[:, :lowest.filled])
    for level in lazy.values():  # what the lowest level did not need
        while level.pull():
            pass
    return {level: value.codes for level, value in lazy.items()}


def receptive_field(decoder, width: int, n_codes: int = 256, trials: int = 3) -> int:
    """How many codes on each side of a code its decoded audio depends on (int), measured on
    the decoder itself (whatever its codebook holds): the widest span where changing one
    input vector changes the output, over a few random inputs of n_codes vectors, plus a
    quarter for positions where the change happened to cancel out. decoder: float32
    [1, T, width] -> audio [1, T * hop, ...]."""
    rng = np.random.default_rng(0)
    middle, reach = n_codes // 2, 0
    for _ in range(trials):
        base = rng.standard_normal([1, n_codes, width]).astype(np.float32)
        changed = base.copy()
        changed[0, middle] += rng.standard_normal(width).astype(np.float32)
        a, b = np.asarray(decoder(base)), np.asarray(decoder(changed))
        differs = np.nonzero(np.any((a != b)[0].reshape(n_codes, -1), axis=1))[0]
        if len(differs):
            reach = max(reach, middle - differs.min(), differs.max() - middle)
    if reach >= middle - 1:  # reaches the probe's ends: probe wider
        return receptive_field(decoder, width, 4 * n_codes, trials)
    return int(reach + (reach + 3) // 4)


class ProgressiveDecoder:
    """Audio of growing codes, equal to decoding them all at once.

    decode: codes int32 [1, T] -> float32 [1, T * hop, channels]; field: receptive_field's
    answer. `add(codes)` with the codes so far [T] returns the audio that became final
    [n, channels]; `finish()` the rest."""

    def __init__(self, decode, hop: int, field: int):
        self.decode, self.hop, self.field = decode, hop, field
        self.codes = np.zeros([0], np.int32)
        self.emitted = 0  # codes whose audio is out

    def _audio(self, stop: int) -> np.ndarray:
        left = max(0, self.emitted - self.field)
        right = min(len(self.codes), stop + self.field)
        audio = np.asarray(self.decode(self.codes[None, left:right]), np.float32)[0]
        audio = audio[(self.emitted - left) * self.hop:(stop - left) * self.hop]
        self.emitted = stop
        return audio

    def add(self, codes) -> np.ndarray | None:
        self.codes = np.asarray(codes, np.int32)
        stop = len(self.codes) - self.field
        return self._audio(stop) if stop > self.emitted else None

    def finish(self) -> np.ndarray | None:
        return self._audio(len(self.codes)) if len(self.codes) > self.emitted else None


def partial_path(path: str) -> str:
    """Where a stream writes `path` until it is complete: OUT.partial.wav for OUT.wav."""
    root, ext = os.path.splitext(path)
    return f"{root}.partial{ext}"


class AudioStream:
    """Rows of growing codes decoded as they become final (ProgressiveDecoder) and appended,
    16-bit, to a WAV per row: written as partial_path(path), which players can open
    meanwhile, and renamed to path when complete.

    decode(codes int32 [1, T]) -> float32 [1, T * hop, channels]. clock(): the seconds that
    `first_second` reports, the time at which row 0 first had a second of audio out, also
    passed to on_first_second(seconds, its partial file) then. length: frames per row to
    write (the rest is dropped; None: all). The audio written is also kept, in `audio`."""

    def __init__(self, paths, decode, hop: int, field: int, rate: int, channels: int,
                 clock: Callable[[], float],
                 on_first_second: Callable[[float, str], None] | None = None,
                 length: int | None = None):
        import soundfile

        self.paths, self.rate, self.clock = list(paths), rate, clock
        self.on_first_second, self.length = on_first_second, length
        self.audio = [[] for _ in self.paths]  # per row, the float chunks written
        self.decoders = [ProgressiveDecoder(decode, hop, field) for _ in self.paths]
        for path in self.paths:
            os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        self.files = [soundfile.SoundFile(partial_path(path), "w", rate, channels,
                                          subtype="PCM_16", format="WAV")
                      for path in self.paths]
        self.first_second = None

    def frames(self, i: int) -> int:
        return sum(map(len, self.audio[i]))

    def _write(self, i: int, audio) -> None:
        if audio is not None and self.length is not None:
            audio = audio[:max(0, self.length - self.frames(i))]
        if audio is None or not len(audio):
            return
        self.audio[i].append(audio)
        self.files[i].write(np.clip(audio, -1.0, 1.0))
        self.files[i].flush()  # the header too: players read what is there
        if i == 0 and self.first_second is None and self.frames(0) >= self.rate:
            self.first_second = self.clock()
            if self.on_first_second:
                self.on_first_second(self.first_second, partial_path(self.paths[0]))

    def add(self, codes) -> None:
        """codes int [B, T]: every row's codes so far."""
        for i, decoder in enumerate(self.decoders):
            self._write(i, decoder.add(codes[i]))

    def finish(self) -> list[str]:
        """The rest of the audio; the complete files' paths."""
        for i, decoder in enumerate(self.decoders):
            self._write(i, decoder.finish())
            self.files[i].close()
            os.replace(partial_path(self.paths[i]), self.paths[i])
        return self.paths
