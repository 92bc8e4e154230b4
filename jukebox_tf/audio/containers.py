"""What an audio file's container says about its stream, read without decoding it.

A decoder alone cannot tell a damaged file from a good one: libsndfile returns whatever frames
are there, and the length a header declares differs from the decoded length by design in lossy
codecs (Vorbis and Opus end trimming, MP3 encoder delay and padding). So truncation is judged
from the container's own structure: a WAV or AIFF data chunk shorter than its header declares,
an Ogg stream without its end-of-stream page or with its last page cut off, an MP3 whose last
frame is cut off or that holds fewer frames than its Xing header counts. FLAC's STREAMINFO
total is exact, so there the decoded length is compared with it (`Layout.exact`).

`inspect(path, container)` returns a `Layout`; `decode.AudioReader` decodes by it.
"""

from __future__ import annotations

import dataclasses
import mmap
import os
import struct

# A stream's bytes: (start, end) ranges of the file, fed to the decoder one after another (MP3
# frames around damaged bytes; decode.py says why streams at all).
Ranges = tuple[tuple[int, int], ...]


@dataclasses.dataclass(frozen=True)
class Layout:
    container: str  # 'wav', 'aiff', 'flac', 'ogg', 'mp3'
    declared_frames: int | None = None  # what the container says the stream holds; None: silent
    frames_rate: int | None = None  # the rate declared_frames count at (Opus: 48 kHz), when it
    # may differ from the rate the decoder gives
    exact: bool = False  # declared_frames is the exact decoded length (lossless containers)
    damage: str = ""  # why the stream ends early, from its structure; '' when it is whole
    streams: tuple[Ranges, ...] = ()  # decoded one after another (chained Ogg); (): the file
    patch: tuple[tuple[int, bytes], ...] = ()  # (offset, bytes) to overwrite in the header
    notes: tuple[str, ...] = ()  # what a user should know that is not damage (kept, flagged)
    header_cut: str = ""  # why a decoder will not open it: the file ends inside its header


def id3v2_end(data, pos: int = 0) -> int:
    """The offset after the ID3v2 tags starting at `pos` (`pos` itself when there is none)."""
    while len(data) >= pos + 10 and data[pos:pos + 3] == b"ID3":
        size = data[pos + 6:pos + 10]
        if any(b & 0x80 for b in size):
            break  # not a syncsafe size: not a tag after all
        length = (size[0] << 21) | (size[1] << 14) | (size[2] << 7) | size[3]
        pos += 10 + length + (10 if data[pos + 5] & 0x10 else 0)
    return pos


def sniff(header: bytes) -> str | None:
    """Container from the first 12 bytes, or None when they are not audio (an ID3v2 tag says
    'mp3'; `inspect` tells a FLAC file behind one)."""
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


def inspect(path: str, container: str) -> Layout:
    """The Layout of the local, non-empty file `path` of `container` (from `sniff`); its
    `container` says 'flac' for a FLAC file behind an ID3v2 tag (taggers write those)."""
    size = os.path.getsize(path)
    with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as data:
        tagged = id3v2_end(data)
        if container == "mp3" and data[tagged:tagged + 4] == b"fLaC":
            container = "flac"
        try:
            return _INSPECTORS[container](data, size)
        except (struct.error, IndexError):  # a field that runs past the end of the file
            return Layout(container, header_cut="the file ends inside its header")


def _seconds(frames: int, rate: int) -> str:
    return f"{frames / rate:.2f} s" if rate > 0 else f"{frames} frames"


# --- WAV ------------------------------------------------------------------------------------

def _next_chunk(data, end: int) -> int:
    """Where the chunk after one ending at `end` starts: chunks are padded to even sizes, but
    some writers leave the pad byte out."""
    if end % 2 and not data[end + 1:end + 5].isascii() and data[end:end + 4].isascii():
        return end
    return end + end % 2


_PCM_TAGS = (1, 3, 6, 7)  # PCM, IEEE float, A-law, mu-law: block_align bytes per frame
_EXTENSIBLE = 0xFFFE


def _wav(data, size: int) -> Layout:
    rf64 = data[:4] == b"RF64"
    pos, fmt, ds64_data = 12, None, None
    while pos + 8 <= size:
        name, length = data[pos:pos + 4], struct.unpack("<I", data[pos + 4:pos + 8])[0]
        body = pos + 8
        if name == b"fmt ":
            fmt = data[body:body + min(length, 40)]
        elif name == b"ds64" and length >= 16:
            ds64_data = struct.unpack("<Q", data[body + 8:body + 16])[0]
        elif name == b"data":
            return _wav_data(data, size, fmt, pos, length, ds64_data if rf64 else None)
        pos = _next_chunk(data, body + length)
    return Layout("wav", header_cut="the file ends before its data chunk")


def _wav_data(data, size, fmt, pos, length, ds64_data) -> Layout:
    if fmt is None or len(fmt) < 16:
        return Layout("wav")
    tag, _, rate = struct.unpack("<HHI", fmt[:8])
    block_align = struct.unpack("<H", fmt[12:14])[0]
    if tag == _EXTENSIBLE and len(fmt) >= 26:
        tag = struct.unpack("<H", fmt[24:26])[0]  # the sub-format GUID starts with the tag
    if tag not in _PCM_TAGS or block_align == 0:
        return Layout("wav")  # compressed WAV: frames are not a byte count; libsndfile's length
    start = pos + 8
    holds = (size - start) // block_align
    if ds64_data is not None and length == 0xFFFFFFFF:
        length = ds64_data
    if length in (0, 0xFFFFFFFF):
        # Written as a stream: the data runs to the end of the file. libsndfile reads 0 as an
        # empty file, so the header it sees says what the file holds.
        partial = (size - start) % block_align
        damage = (f"the data ends inside a sample frame ({partial} of its {block_align} bytes "
                  f"are there)") if partial else ""
        patch = ()
        if length == 0 and holds > 0 and data[:4] == b"RIFF":
            real = min(holds * block_align, 0xFFFFFFFF - 64)
            patch = ((4, struct.pack("<I", min(size - 8, 0xFFFFFFFF))),
                     (pos + 4, struct.pack("<I", real)))
        return Layout("wav", holds, exact=True, damage=damage, patch=patch)
    declared = length // block_align
    damage = ""
    if holds < declared:
        damage = (f"the data chunk declares {_seconds(declared, rate)}, the file holds "
                  f"{_seconds(holds, rate)}")
    return Layout("wav", declared, exact=True, damage=damage)


# --- AIFF / AIFF-C --------------------------------------------------------------------------

def _extended_to_float(b: bytes) -> float:
    """An 80-bit IEEE 754 extended float (AIFF's sample rate)."""
    exponent = struct.unpack(">H", b[:2])[0]
    mantissa = struct.unpack(">Q", b[2:10])[0]
    sign = -1.0 if exponent & 0x8000 else 1.0
    exponent &= 0x7FFF
    if exponent == 0 and mantissa == 0:
        return 0.0
    return sign * mantissa * 2.0 ** (exponent - 16383 - 63)


# Bytes per sample of the uncompressed AIFF-C types (None: the sample size decides).
_AIFC_SAMPLE_BYTES = {b"NONE": None, b"twos": None, b"sowt": None, b"raw ": None,
                      b"in24": 3, b"in32": 4, b"fl32": 4, b"FL32": 4, b"fl64": 8, b"FL64": 8,
                      b"ulaw": 1, b"ULAW": 1, b"alaw": 1, b"ALAW": 1}


def _aiff(data, size: int) -> Layout:
    aifc = data[8:12] == b"AIFC"
    pos, frame_bytes, declared, rate = 12, None, None, 0
    while pos + 8 <= size:
        name, length = data[pos:pos + 4], struct.unpack(">I", data[pos + 4:pos + 8])[0]
        body = pos + 8
        if name == b"COMM" and body + 18 <= size:
            channels, declared, bits = struct.unpack(">HIH", data[body:body + 8])
            rate = int(_extended_to_float(data[body + 8:body + 18]))
            kind = data[body + 18:body + 22] if aifc else b"NONE"
            sample_bytes = _AIFC_SAMPLE_BYTES.get(kind, 0)
            if sample_bytes is None:
                sample_bytes = (bits + 7) // 8
            frame_bytes = channels * sample_bytes if sample_bytes else None
        elif name == b"SSND" and declared is not None:
            if not frame_bytes:
                return Layout("aiff", declared)  # compressed: no byte count to check
            offset = struct.unpack(">I", data[body:body + 4])[0] if body + 4 <= size else 0
            start = body + 8 + offset
            end = min(size, body + length)
            holds = max(end - start, 0) // frame_bytes
            damage = ""
            if holds < declared:
                damage = (f"the COMM chunk declares {_seconds(declared, rate)}, the SSND chunk "
                          f"holds {_seconds(holds, rate)}")
            return Layout("aiff", declared, exact=True, damage=damage)
        pos = _next_chunk(data, body + length)
    return Layout("aiff", declared, header_cut="the file ends before its SSND chunk")


# --- FLAC -----------------------------------------------------------------------------------

_FLAC_BLOCKS = ("STREAMINFO", "PADDING", "APPLICATION", "SEEKTABLE", "VORBIS_COMMENT",
                "CUESHEET", "PICTURE")


def _flac(data, size: int) -> Layout:
    pos = id3v2_end(data) + 4  # after 'fLaC'
    total, last = None, False
    while not last:
        if pos + 4 > size:
            return Layout("flac", header_cut="the file ends inside its metadata blocks")
        kind, length = data[pos] & 0x7F, int.from_bytes(data[pos + 1:pos + 4], "big")
        last, pos = bool(data[pos] & 0x80), pos + 4
        if pos + length > size:
            name = _FLAC_BLOCKS[kind] if kind < len(_FLAC_BLOCKS) else f"type {kind}"
            return Layout("flac", header_cut=f"the file ends inside its {name} metadata block")
        if kind == 0 and length >= 18:  # STREAMINFO
            total = int.from_bytes(data[pos + 10:pos + 18], "big") & ((1 << 36) - 1)
        pos += length
    # A total of 0: the encoder did not know the length (a stream); decoding tells.
    return Layout("flac", total or None, exact=bool(total))


# --- Ogg ------------------------------------------------------------------------------------

@dataclasses.dataclass
class _Link:
    """One link of a (possibly chained) Ogg file: the logical streams that begin together."""
    start: int
    end: int = 0
    codec: str = "unknown"
    rate: int = 0
    channels: int = 0
    pre_skip: int = 0
    last_granule: int = -1
    serials: set = dataclasses.field(default_factory=set)
    ended: set = dataclasses.field(default_factory=set)

    @property
    def frames(self) -> int | None:
        if self.last_granule < 0:
            return None
        return max(self.last_granule - self.pre_skip, 0)

    @property
    def format(self) -> tuple:
        return self.codec, self.rate, self.channels

    def describe(self) -> str:
        return f"{self.codec} {self.rate} Hz, {self.channels} channel(s)"


def _ogg_codec(link: _Link, packet: bytes) -> None:
    if packet[:7] == b"\x01vorbis" and len(packet) >= 16:
        link.codec, link.channels = "Vorbis", packet[11]
        link.rate = struct.unpack("<I", packet[12:16])[0]
    elif packet[:8] == b"OpusHead" and len(packet) >= 12:
        link.codec, link.channels, link.rate = "Opus", packet[9], 48000  # granules' rate
        link.pre_skip = struct.unpack("<H", packet[10:12])[0]
    elif packet[:5] == b"\x7fFLAC":
        link.codec = "FLAC"
    elif packet[:8] == b"Speex   ":
        link.codec = "Speex"


def _ogg(data, size: int) -> Layout:
    links: list[_Link] = []
    pos, damage, junk, missing = 0, "", 0, ""
    expected_seq: dict[int, int] = {}
    while pos < size:
        if data[pos:pos + 4] != b"OggS":
            found = data.find(b"OggS", pos)
            if found < 0:
                break  # trailing bytes (an ID3v1 tag, padding): not audio
            junk += found - pos  # between pages: damaged data the decoder skips too
            pos = found
        if pos + 27 > size:
            damage = "the last Ogg page is cut off inside its header"
            break
        flags = data[pos + 5]
        granule, serial, seq = struct.unpack("<qII", data[pos + 6:pos + 22])
        segments = data[pos + 26]
        if pos + 27 + segments > size:
            damage = "the last Ogg page is cut off inside its header"
            break
        lacing = data[pos + 27:pos + 27 + segments]
        body = pos + 27 + segments
        end = body + sum(lacing)
        if end > size:
            damage = (f"the last Ogg page is cut off ({size - pos} of its {end - pos} bytes "
                      f"are there)")
            break
        if flags & 0x02:  # beginning of a logical stream, with its own page numbers
            expected_seq.pop(serial, None)
            if not links or (links[-1].serials and links[-1].serials <= links[-1].ended):
                links.append(_Link(pos))
            link = links[-1]
            link.serials.add(serial)
            if len(link.serials) == 1:
                _ogg_codec(link, bytes(data[body:body + min(lacing[0] if lacing else 0, 64)]))
        elif not links:
            pos = end  # pages before any stream begins: nothing to decode
            continue
        link = links[-1]
        if serial in expected_seq and seq != expected_seq[serial] and not missing:
            missing = (f"Ogg pages are missing (page {expected_seq[serial]} of stream "
                       f"{serial:#x} is followed by page {seq})")
        expected_seq[serial] = seq + 1
        if granule >= 0 and serial == min(link.serials):
            link.last_granule = granule
        if flags & 0x04:
            link.ended.add(serial)
        link.end = end
        pos = end
    if not links:
        return Layout("ogg", header_cut=damage or "no Ogg stream begins in the file")
    last = links[-1]
    if not damage and not last.serials <= last.ended:
        damage = "the Ogg stream ends without its end-of-stream page"
    first = links[0]
    kept = [link for link in links if link.format == first.format]
    notes = []
    skipped = [i for i, link in enumerate(links) if link.format != first.format]
    if skipped:
        notes.append(f"chained Ogg of {len(links)} streams: skipped " + ", ".join(
            f"stream {i + 1} ({links[i].describe()}, unlike stream 1's {first.describe()})"
            for i in skipped))
    if junk:
        notes.append(f"{junk} bytes of damaged data between Ogg pages were skipped")
    if missing:
        notes.append(missing)
    frames = [link.frames for link in kept]
    declared = None if None in frames else sum(frames)
    return Layout("ogg", declared, frames_rate=first.rate if first.codec == "Opus" else None,
                  damage=damage, streams=tuple(((link.start, link.end),) for link in kept),
                  notes=tuple(notes))


# --- MP3 ------------------------------------------------------------------------------------

_BITRATES = {  # kbit/s by (MPEG-1?, layer); index 1..14
    (True, 1): (32, 64, 96, 128, 160, 192, 224, 256, 288, 320, 352, 384, 416, 448),
    (True, 2): (32, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320, 384),
    (True, 3): (32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320),
    (False, 1): (32, 48, 56, 64, 80, 96, 112, 128, 144, 160, 176, 192, 224, 256),
    (False, 2): (8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160),
}
_BITRATES[(False, 3)] = _BITRATES[(False, 2)]
_RATES = {3: (44100, 48000, 32000), 2: (22050, 24000, 16000), 0: (11025, 12000, 8000)}


@dataclasses.dataclass(frozen=True)
class _Frame:
    length: int  # bytes
    samples: int
    rate: int
    kind: tuple  # (version, layer, rate): a stream does not change these
    side_info: int  # bytes of Layer III side information after the header (and CRC)


_frame_cache: dict[int, _Frame | None] = {}


def _mp3_frame(header: int) -> _Frame | None:
    """The frame a 4-byte MPEG audio header starts, None when it is not a valid header."""
    key = header & 0xFFFFFE00 | (header >> 6 & 3)  # padding bit kept, mono or not kept
    if key in _frame_cache:
        return _frame_cache[key]
    frame = None
    version, layer_bits = header >> 19 & 3, header >> 17 & 3
    bitrate_index, rate_index = header >> 12 & 15, header >> 10 & 3
    if (header >> 21 == 0x7FF and version != 1 and layer_bits != 0 and 0 < bitrate_index < 15
            and rate_index != 3):
        layer = 4 - layer_bits
        mpeg1 = version == 3
        bitrate = _BITRATES[(mpeg1, layer)][bitrate_index - 1] * 1000
        rate = _RATES[version][rate_index]
        padding = header >> 9 & 1
        if layer == 1:
            length, samples = (12 * bitrate // rate + padding) * 4, 384
        elif layer == 2 or mpeg1:
            length, samples = 144 * bitrate // rate + padding, 1152
        else:
            length, samples = 72 * bitrate // rate + padding, 576
        mono = (header >> 6 & 3) == 3
        side = (17 if mono else 32) if mpeg1 else (9 if mono else 17)
        crc = 0 if header >> 16 & 1 else 2
        frame = _Frame(length, samples, rate, (version, layer, rate), side + crc)
    _frame_cache[key] = frame
    return frame


def _header_at(data, pos: int, size: int) -> _Frame | None:
    if pos + 4 > size:
        return None
    return _mp3_frame(int.from_bytes(data[pos:pos + 4], "big"))


def _synced_at(data, pos: int, size: int, kind: tuple | None = None) -> _Frame | None:
    """A frame at `pos` whose successor is a frame of the same kind (or the end of the data)."""
    frame = _header_at(data, pos, size)
    if frame is None or (kind is not None and frame.kind != kind):
        return None
    after = pos + frame.length
    if after >= size or _tag_at(data, after):
        return frame
    following = _header_at(data, after, size)
    return frame if following is not None and following.kind == frame.kind else None


_END_TAGS = (b"TAG", b"APETAGEX", b"LYRICSBEGIN", b"ID3", b"3DI")


def _tag_at(data, pos: int) -> bool:
    return any(data[pos:pos + len(tag)] == tag for tag in _END_TAGS)


def _resync(data, pos: int, size: int, kind: tuple | None, limit: int) -> int:
    """The next synced frame at or after `pos` (searching `limit` bytes), else -1."""
    stop = min(size, pos + limit)
    while True:
        pos = data.find(b"\xff", pos, stop)
        if pos < 0:
            return -1
        if _synced_at(data, pos, size, kind) is not None:
            return pos
        pos += 1


def _xing(data, pos: int, frame: _Frame) -> tuple[int | None, int, int, bool]:
    """(frames it counts, encoder delay, padding, whether this is an info frame) of a first
    frame holding a Xing/Info (LAME) or VBRI header."""
    at = pos + 4 + frame.side_info
    tag = data[at:at + 4]
    if tag in (b"Xing", b"Info"):
        flags = struct.unpack(">I", data[at + 4:at + 8])[0]
        field, frames = at + 8, None
        if flags & 1:
            frames = struct.unpack(">I", data[field:field + 4])[0]
            field += 4
        field += (4 if flags & 2 else 0) + (100 if flags & 4 else 0) + (4 if flags & 8 else 0)
        delay = padding = 0
        if data[field:field + 4] in (b"LAME", b"Lavc", b"Lavf", b"L3.9"):
            b = data[field + 21:field + 24]
            delay, padding = (b[0] << 4) | (b[1] >> 4), ((b[1] & 15) << 8) | b[2]
        return frames, delay, padding, True
    at = pos + 36
    if data[at:at + 4] == b"VBRI":
        return struct.unpack(">I", data[at + 14:at + 18])[0], 0, 0, True
    return None, 0, 0, False


def _mp3(data, size: int) -> Layout:
    tagged = id3v2_end(data)
    if tagged >= size:
        return Layout("mp3", header_cut="the file ends inside its ID3v2 tag")
    first = _resync(data, tagged, size, None, limit=1 << 20)
    if first < 0:  # e.g. a free-format bitrate, which has no frame length to walk by
        return Layout("mp3")
    head = _header_at(data, first, size)
    counted, delay, padding, info_frame = _xing(data, first, head) if head.kind[1] == 3 else (
        None, 0, 0, False)
    pos, frames, damage, junk, notes = first, 0, "", 0, []
    runs = [[first, first]]  # (start, end) of the runs of whole frames, junk left out
    while pos < size:
        frame = _header_at(data, pos, size)
        if frame is None or frame.kind != head.kind:
            if _tag_at(data, pos):
                break
            if size - pos < 4 and data[pos] == 0xFF:
                damage = "the last MPEG audio frame is cut off inside its header"
                break
            found = _resync(data, pos + 1, size, head.kind, limit=size)
            if found < 0:  # trailing bytes that are not audio, or another kind of stream
                if _resync(data, pos, size, None, limit=size) >= 0:
                    seconds = ((frames - info_frame) * head.samples - delay - padding) / head.rate
                    notes.append(f"the MPEG audio changes sample rate or layer after "
                                 f"{seconds:.2f} s; the rest was skipped")
                break
            # Damaged bytes between frames, left out of the stream: fed them, mpg123 may give
            # up resyncing and end the stream there.
            junk += found - pos
            pos = found
            runs.append([pos, pos])
            continue
        if pos + frame.length > size:
            damage = (f"the last MPEG audio frame is cut off ({size - pos} of its "
                      f"{frame.length} bytes are there)")
            break
        frames += 1
        pos += frame.length
        runs[-1][1] = pos
    audio_frames = frames - info_frame
    if counted is not None and counted > audio_frames and not damage:
        damage = f"its Xing header counts {counted} frames, the file holds {audio_frames}"
    total = (counted if counted is not None else audio_frames) * head.samples - delay - padding
    if junk:
        notes.append(f"{junk} bytes of damaged data between MPEG audio frames were skipped")
    return Layout("mp3", max(total, 0), damage=damage,
                  streams=(tuple((a, b) for a, b in runs if b > a),), notes=tuple(notes))


_INSPECTORS = {"wav": _wav, "aiff": _aiff, "flac": _flac, "ogg": _ogg, "mp3": _mp3}
