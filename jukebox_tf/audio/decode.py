"""Decoding audio files as a stream of float32 blocks, with the checks that make bad files fail
with a one-line reason instead of poisoning a dataset, and damaged ones keep what decodes.

libsndfile (via soundfile) decodes WAV, FLAC, OGG/Vorbis, Opus, MP3 and AIFF in bounded memory;
tensorflow-io is the fallback for files libsndfile refuses (it decodes the whole file at once,
so the several-hours guarantee holds for the soundfile path only).

libsndfile stops every read at the length it took from the header, which for an MP3 without a
Xing header is a guess from the first frame's bitrate (half of a VBR file went missing), and
for Ogg the last granule position. So Ogg and MP3 are decoded as a stream: the byte ranges that
`containers.inspect` found (whole pages, whole frames) are written into a pipe, and libsndfile
reads a pipe to its end. WAV, AIFF and FLAC are read from the file, their headers being exact.

Checks: empty or non-audio files (by header bytes, before any decoder sees them), unsupported
formats, zero-length audio, NaN/inf samples in float files (all rejected), and truncation or
damage, judged from the container's structure (`containers`) and from decoder errors: what
decodes is kept and the file is flagged with the reason and the amount kept, or rejected when
the reader is strict.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import os
import re
import threading
from typing import Iterator

import numpy as np
import soundfile

from jukebox_tf import storage
from jukebox_tf.audio import containers
from jukebox_tf.audio.containers import sniff

SUPPORTED_EXTENSIONS = (".wav", ".wave", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".aif",
                        ".aiff", ".aifc")
# Audio people may well drop into a music folder but that neither decoder reads.
UNSUPPORTED_AUDIO_EXTENSIONS = (".m4a", ".aac", ".wma", ".mp4", ".alac", ".ape", ".mid", ".midi",
                                ".amr", ".ra", ".webm", ".mka", ".dsf")
_UNKNOWN_LENGTH = 2**63 - 1  # libsndfile's frame count for a stream (SF_COUNT_MAX)


class AudioError(Exception):
    """A file that cannot be ingested; str(e) is the one-line reason shown to the user."""


@dataclasses.dataclass(frozen=True)
class AudioInfo:
    sample_rate: int
    channels: int
    frames: int  # the length the container declares (counted by decoding where it is silent)
    container: str  # 'wav', 'flac', 'ogg', 'mp3', 'aiff'
    backend: str  # 'soundfile' or 'tensorflow-io'


def _seconds(frames: int, rate: int) -> str:
    return f"{frames / rate:.2f} s"


class _PipeFeed:
    """Writes byte ranges [(start, end), ...] of a file, one after another, into a pipe from a
    thread; `fd` is the read end.

    libsndfile treats a pipe as a stream of unknown length and decodes it to its end."""

    def __init__(self, path: str, ranges: containers.Ranges):
        self.fd, write_fd = os.pipe()
        with contextlib.suppress(OSError):  # fewer thread switches; Linux only, not essential
            fcntl.fcntl(write_fd, getattr(fcntl, "F_SETPIPE_SZ", 1031), 1 << 20)
        self._thread = threading.Thread(target=self._feed, args=(path, ranges, write_fd),
                                        daemon=True)
        self._thread.start()

    @staticmethod
    def _feed(path: str, ranges: containers.Ranges, write_fd: int) -> None:
        try:
            with open(path, "rb") as source:
                for start, end in ranges:
                    while start < end:
                        sent = os.sendfile(write_fd, source.fileno(), start,
                                           min(1 << 20, end - start))
                        if sent == 0:
                            return
                        start += sent
        except OSError:
            pass  # the reader closed its end (BrokenPipeError): it has what it wanted
        finally:
            os.close(write_fd)

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)  # unblocks a writer waiting on a full pipe
            self.fd = -1
        self._thread.join()


class _PatchedFile:
    """A file whose bytes at some offsets read as others (soundfile's virtual I/O protocol):
    a WAV written as a stream gets the data size it holds instead of 0."""

    def __init__(self, path: str, patch: tuple[tuple[int, bytes], ...]):
        self._file = open(path, "rb")
        self._patch = patch

    def read(self, n: int = -1) -> bytes:
        offset = self._file.tell()
        data = bytearray(self._file.read(n))
        for at, value in self._patch:
            lo, hi = max(at, offset), min(at + len(value), offset + len(data))
            if lo < hi:
                data[lo - offset:hi - offset] = value[lo - at:hi - at]
        return bytes(data)

    def seek(self, offset: int, whence: int = 0) -> int:
        return self._file.seek(offset, whence)

    def tell(self) -> int:
        return self._file.tell()

    def write(self, data) -> int:
        raise OSError("read-only")

    def close(self) -> None:
        self._file.close()


def _read_frames(file: soundfile.SoundFile, frames: int) -> tuple[np.ndarray | None, str]:
    """(the next <= `frames` frames as float32 [n, channels] or None at the end, the decoder's
    error message or '').

    Calls libsndfile's sf_readf_float directly: SoundFile.read() asks for the position
    (sf_seek(0, SEEK_CUR)) before every read, and on MP3 that seek resets mpg123's bit
    reservoir, so block-wise reads of MP3 come out garbled (libsndfile 1.2.2).
    """
    out = np.empty((frames, file.channels), np.float32)
    n = soundfile._snd.sf_readf_float(file._file, soundfile._ffi.cast("float *", out.ctypes.data),
                                      frames)
    error = soundfile._snd.sf_error(file._file)
    message = ""
    if error:
        message = soundfile._ffi.string(soundfile._snd.sf_error_number(error)).decode(
            "utf-8", "replace").strip()
    return (out[:n] if n > 0 else None), message


class AudioReader:
    """Streams one audio file as float32 [frames, channels] blocks at its own sample rate.

    Raises AudioError on open (or while streaming) with a one-line reason. A file cut short or
    damaged yields what decodes and, once the blocks are exhausted, says so in `flags` (or
    raises AudioError when `strict`).
        with AudioReader(path) as reader:
            for block in reader.blocks(65536): ...
            reader.flags  # ['truncated: ...; kept 61.20 s of 180.00 s']
    """

    def __init__(self, path: str, strict: bool = False):
        self.path = path
        self.strict = strict
        self.flags: list[str] = []
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
        self._source = None  # the _PipeFeed or _PatchedFile self._file reads
        self._decode_error = ""
        # libsndfile and tensorflow-io read real files: a remote one is decoded from a copy.
        self._copy = contextlib.ExitStack()
        try:
            self._local = self._copy.enter_context(storage.local_copy(path))
            self.layout = containers.inspect(self._local, container)
            self.info = self._open()
        except BaseException:
            self.close()
            raise

    def _open_soundfile(self, stream: int = 0) -> soundfile.SoundFile:
        """libsndfile on stream `stream` of the layout's, or on the (patched) file."""
        self._close_file()
        layout = self.layout
        if layout.streams:
            self._source = _PipeFeed(self._local, layout.streams[stream])
            return soundfile.SoundFile(self._source.fd, closefd=False)
        if layout.patch:
            self._source = _PatchedFile(self._local, layout.patch)
            return soundfile.SoundFile(self._source)
        return soundfile.SoundFile(self._local)

    def _open(self) -> AudioInfo:
        container = self.layout.container
        try:
            self._file = self._open_soundfile()
            frames, rate = self.layout.declared_frames, self._file.samplerate
            if frames is not None and self.layout.frames_rate not in (None, rate):
                # libsndfile decodes Opus at the Opus rate nearest the source's (24 kHz for
                # 22.05 kHz), while granule positions count at 48 kHz.
                frames = int(round(frames * rate / self.layout.frames_rate))
            if frames is None and self._file.frames < _UNKNOWN_LENGTH:
                frames = self._file.frames
            if frames is None or (frames == 0 and not self.layout.exact):
                frames = self._count_frames()  # granule positions can be missing or wrong
            info = AudioInfo(self._file.samplerate, self._file.channels, frames, container,
                             "soundfile")
        except (soundfile.LibsndfileError, RuntimeError) as e:
            self._close_file()
            error = str(e).replace(f"'{self._local}'", "file").strip()
            if self.layout.header_cut:  # no other decoder reads a file without its header
                raise AudioError(f"truncated: {self.layout.header_cut}; nothing decodes")
            if self.layout.streams and self.layout.damage:
                raise AudioError(f"truncated: {self.layout.damage}; nothing decodes (libsndfile: "
                                 f"{re.sub(r'^Error opening [^:]*: ', '', error)})") from None
            info = self._open_tfio(container, error)
        if info.frames == 0:
            if self.layout.damage:
                raise AudioError(f"truncated: {self.layout.damage}; nothing decodes")
            raise AudioError("zero-length audio: the file holds no audio frames")
        return info

    def _count_frames(self) -> int:
        """Frames that decode, by decoding once (for a container that does not say)."""
        counted = 0
        while True:
            block, error = _read_frames(self._file, 1 << 16)
            counted += 0 if block is None else len(block)
            if block is None or error:
                break
        self._file = self._open_soundfile()  # back to the start
        return counted

    def _open_tfio(self, container: str, soundfile_error: str) -> AudioInfo:
        try:
            import tensorflow_io as tfio

            self._tfio = tfio.audio.AudioIOTensor(self._local)
            frames, channels = (int(v) for v in self._tfio.shape.numpy())
            return AudioInfo(int(self._tfio.rate.numpy()), channels, frames, container,
                             "tensorflow-io")
        except Exception as e:  # noqa: BLE001 - any decoder failure is a rejection
            tfio_error = re.sub(r"\{\{[^}]*\}\}\s*", "", str(e).strip().splitlines()[-1])
            raise AudioError(f"cannot decode {container} data: {soundfile_error} "
                             f"(tensorflow-io: {tfio_error[:120]})") from None

    def _raw_blocks(self, block_frames: int) -> Iterator[np.ndarray]:
        if self._tfio is not None:
            scale = None
            for start in range(0, self.info.frames, block_frames):
                block = self._tfio[start:start + block_frames].numpy()
                if block.dtype.kind == "i":
                    scale = scale or float(np.iinfo(block.dtype).max + 1)
                    block = block.astype(np.float32) / scale
                yield block.astype(np.float32, copy=False).reshape(len(block), -1)
            return
        for stream in range(max(1, len(self.layout.streams))):
            if stream:
                self._file = self._open_soundfile(stream)
                if (self._file.samplerate, self._file.channels) != (self.info.sample_rate,
                                                                    self.info.channels):
                    self.flags.append(f"chained stream {stream + 1} decodes as "
                                      f"{self._file.samplerate} Hz, {self._file.channels} "
                                      f"channel(s), unlike stream 1; skipped")
                    continue
            while True:
                block, error = _read_frames(self._file, block_frames)
                if block is not None:
                    yield block
                if error:
                    self._decode_error = error
                    return
                if block is None:
                    break

    def blocks(self, block_frames: int) -> Iterator[np.ndarray]:
        """Validated float32 [n, channels] blocks; raises AudioError at the first problem."""
        decoded = 0
        for block in self._raw_blocks(block_frames):
            if not np.isfinite(block).all():
                first = int(np.argmin(np.isfinite(block).all(axis=1)))
                raise AudioError(f"contains NaN/inf samples (first at frame {decoded + first})")
            decoded += len(block)
            yield block
        self._judge_end(decoded)

    def _judge_end(self, decoded: int) -> None:
        """Flags (or, when strict, rejects) a file whose stream ended early or in error."""
        layout, rate, declared = self.layout, self.info.sample_rate, self.info.frames
        if layout.damage:
            problem = f"truncated: {layout.damage}"
        elif layout.exact and decoded < declared:
            problem = (f"truncated: the header declares {_seconds(declared, rate)}, "
                       f"{_seconds(decoded, rate)} decode")
        elif self._decode_error:
            problem = f"damaged: decoding stopped at {_seconds(decoded, rate)}"
        else:
            problem = ""
        if problem and self._decode_error:
            problem += f" (decoder: {self._decode_error})"
        if decoded == 0:
            raise AudioError("no audio decodes" + (f": {problem}" if problem else ""))
        if problem:
            if self.strict:
                raise AudioError(f"{problem}; rejected (strict)")
            kept = _seconds(decoded, rate)
            if declared > decoded:
                kept += f" of {_seconds(declared, rate)}"
            self.flags.append(f"{problem}; kept {kept}")
        self.flags.extend(layout.notes)

    def _close_file(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
        if self._source is not None:
            self._source.close()
            self._source = None

    def close(self):
        self._close_file()
        self._copy.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False
