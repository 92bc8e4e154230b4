"""Decoding audio files as a stream of float32 blocks, with the checks that make bad files fail
with a one-line reason instead of poisoning a dataset.

libsndfile (via soundfile) decodes WAV, FLAC, OGG/Vorbis, Opus, MP3 and AIFF in bounded memory;
tensorflow-io is the fallback for files libsndfile refuses (it decodes the whole file at once,
so the several-hours guarantee holds for the soundfile path only).

Checks: empty or non-audio files (by header bytes, before any decoder sees them), unsupported
formats, zero-length audio, truncation (libsndfile silently returns the frames that are there,
so the declared length is compared with what decodes), and NaN/inf samples in float files.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import struct
from typing import Iterator

import numpy as np
import soundfile

from jukebox_tf import storage

SUPPORTED_EXTENSIONS = (".wav", ".wave", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".aif",
                        ".aiff")
# Audio people may well drop into a music folder but that neither decoder reads.
UNSUPPORTED_AUDIO_EXTENSIONS = (".m4a", ".aac", ".wma", ".mp4", ".alac", ".ape", ".mid", ".midi",
                                ".amr", ".ra", ".webm", ".mka", ".dsf")
_LOSSY_SLACK = 0.01  # MP3 lengths are estimates; beyond 1% short, the file is cut off


class AudioError(Exception):
    """A file that cannot be ingested; str(e) is the one-line reason shown to the user."""


@dataclasses.dataclass(frozen=True)
class AudioInfo:
    sample_rate: int
    channels: int
    frames: int  # declared length
    container: str  # 'wav', 'flac', 'ogg', 'mp3', 'aiff'
    backend: str  # 'soundfile' or 'tensorflow-io'


def sniff(header: bytes) -> str | None:
    """Container from the first 12 bytes, or None when they are not audio."""
    if header[:4] in (b"RIFF", b"RF64") and header[8:12] == b"WAVE":
        return "wav"
    if header[:4] == b"FORM" and header[8:12] in (b"AIFF", b"AIFC"):
        return "aiff"
    if header[:4] == b"fLaC":
        return "flac"
    if header[:4] == b"OggS":
        return "ogg"
    if header[:3] == b"ID3" or (len(header) > 1 and header[0] == 0xFF
                                and header[1] & 0xE0 == 0xE0):
        return "mp3"
    return None


def wav_declared_frames(path: str) -> int | None:
    """Frames the RIFF header's data chunk declares (libsndfile clamps this to the file size,
    which hides truncation); None when the header leaves it open (streamed WAVs)."""
    with open(path, "rb") as f:
        if f.read(4) != b"RIFF":
            return None
        f.seek(12)
        block_align = None
        while True:
            chunk = f.read(8)
            if len(chunk) < 8:
                return None
            name, size = chunk[:4], struct.unpack("<I", chunk[4:])[0]
            if name == b"fmt ":
                fmt = f.read(size)
                block_align = struct.unpack("<H", fmt[12:14])[0] if len(fmt) >= 14 else None
                f.seek(size % 2, os.SEEK_CUR)
            elif name == b"data":
                if not block_align or size in (0, 0xFFFFFFFF):
                    return None
                return size // block_align
            else:
                f.seek(size + size % 2, os.SEEK_CUR)


def _read_frames(file: soundfile.SoundFile, frames: int) -> np.ndarray | None:
    """The next <= `frames` frames as float32 [n, channels], None at the end.

    Calls libsndfile's sf_readf_float directly: SoundFile.read() asks for the position
    (sf_seek(0, SEEK_CUR)) before every read, and on MP3 that seek resets mpg123's bit
    reservoir, so block-wise reads of MP3 come out garbled (libsndfile 1.2.2).
    """
    out = np.empty((frames, file.channels), np.float32)
    n = soundfile._snd.sf_readf_float(file._file, soundfile._ffi.cast("float *", out.ctypes.data),
                                      frames)
    error = soundfile._snd.sf_error(file._file)
    if error:
        message = soundfile._ffi.string(soundfile._snd.sf_error_number(error)).decode(
            "utf-8", "replace")
        raise AudioError(f"corrupt or truncated data: {message.strip()}")
    return out[:n] if n > 0 else None


class AudioReader:
    """Streams one audio file as float32 [frames, channels] blocks at its own sample rate.

    Raises AudioError on open (or while streaming) with a one-line reason.
        with AudioReader(path) as reader:
            for block in reader.blocks(65536): ...
    """

    def __init__(self, path: str):
        self.path = path
        ext = os.path.splitext(path)[1].lower()
        if ext in UNSUPPORTED_AUDIO_EXTENSIONS:
            raise AudioError(f"unsupported format '{ext}' (supported: "
                             f"{' '.join(SUPPORTED_EXTENSIONS)})")
        size = storage.getsize(path)
        if size == 0:
            raise AudioError("empty file (0 bytes)")
        with storage.open(path, "rb") as f:
            header = f.read(12)
        container = sniff(header)
        if container is None:
            raise AudioError(f"not an audio file: unrecognised header bytes {header[:8]!r}")
        self._file = None
        self._tfio = None
        # libsndfile and tensorflow-io read real files: a remote one is decoded from a copy.
        self._copy = contextlib.ExitStack()
        try:
            self.info = self._open(self._copy.enter_context(storage.local_copy(path)),
                                   container)
        except BaseException:
            self.close()
            raise

    def _open(self, path: str, container: str) -> AudioInfo:
        try:
            self._file = soundfile.SoundFile(path)
            info = AudioInfo(self._file.samplerate, self._file.channels, self._file.frames,
                             container, "soundfile")
        except (soundfile.LibsndfileError, RuntimeError) as e:
            info = self._open_tfio(path, container, str(e).replace(f"'{path}'", "file"))
        if info.frames == 0:
            raise AudioError("zero-length audio: the file holds no audio frames"
                             + (" (or is truncated)" if container == "ogg" else ""))
        if container == "wav" and self._file is not None:
            declared = wav_declared_frames(path)
            if declared is not None and declared > info.frames:
                raise AudioError(f"truncated: header declares {declared} frames, the file "
                                 f"holds {info.frames}")
        return info

    def _open_tfio(self, path: str, container: str, soundfile_error: str) -> AudioInfo:
        try:
            import tensorflow_io as tfio

            self._tfio = tfio.audio.AudioIOTensor(path)
            frames, channels = (int(v) for v in self._tfio.shape.numpy())
            return AudioInfo(int(self._tfio.rate.numpy()), channels, frames, container,
                             "tensorflow-io")
        except Exception as e:  # noqa: BLE001 - any decoder failure is a rejection
            tfio_error = str(e).strip().splitlines()[-1][:120]
            raise AudioError(f"cannot decode {container} data: {soundfile_error.strip()} "
                             f"(tensorflow-io: {tfio_error})") from None

    def _raw_blocks(self, block_frames: int) -> Iterator[np.ndarray]:
        if self._file is not None:
            while True:
                block = _read_frames(self._file, block_frames)
                if block is None:
                    return
                yield block
        else:
            scale = None
            for start in range(0, self.info.frames, block_frames):
                block = self._tfio[start:start + block_frames].numpy()
                if block.dtype.kind == "i":
                    scale = scale or float(np.iinfo(block.dtype).max + 1)
                    block = block.astype(np.float32) / scale
                yield block.astype(np.float32, copy=False).reshape(len(block), -1)

    def blocks(self, block_frames: int) -> Iterator[np.ndarray]:
        """Validated float32 [n, channels] blocks; raises AudioError at the first problem."""
        decoded = 0
        for block in self._raw_blocks(block_frames):
            if not np.isfinite(block).all():
                first = int(np.argmin(np.isfinite(block).all(axis=1)))
                raise AudioError(f"contains NaN/inf samples (first at frame {decoded + first})")
            decoded += len(block)
            yield block
        declared = self.info.frames
        slack = int(declared * _LOSSY_SLACK) if self.info.container == "mp3" else 0
        if decoded < declared - slack or decoded == 0:
            raise AudioError(f"truncated: header declares {declared} frames, only {decoded} "
                             f"decode")

    def close(self):
        if self._file is not None:
            self._file.close()
            self._file = None
        self._copy.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False
