"""A corpus made by real encoders (oggenc, opusenc, lame, flac, sox, ffmpeg), plus each file cut
short at three points: what ingest must keep, flag or reject. Nothing here is committed audio:
the sources are synthesized, the encoders run at test time.

    python tests/encoded_corpus.py OUT_DIR   # builds it, ingests it, prints the outcome table
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import struct
import subprocess
import sys

import numpy as np
import soundfile as sf

# command -> the Debian package that has it (the Makefile's `encoders` target installs them)
ENCODERS = {"oggenc": "vorbis-tools", "opusenc": "opus-tools", "lame": "lame", "flac": "flac",
            "sox": "sox", "ffmpeg": "ffmpeg"}


def missing_encoders() -> list[str]:
    return [f"{cmd} ({pkg})" for cmd, pkg in ENCODERS.items() if shutil.which(cmd) is None]


# name -> (rate, channels, seconds): lengths that are no multiple of any block or frame size
SOURCES = {
    "44k_stereo": (44100, 2, 2.3457),
    "44k_stereo_short": (44100, 2, 0.4321),
    "44k_stereo_long": (44100, 2, 6.7891),
    "22k_mono": (22050, 1, 1.7313),
    "48k_5.1": (48000, 6, 1.3107),
    "8k_mono": (8000, 1, 2.1011),
    "96k_stereo": (96000, 2, 0.9133),
}


def synth(rate: int, channels: int, seconds: float, seed: int) -> np.ndarray:
    """Music-like int16 [frames, channels]: decaying harmonic notes over a little noise."""
    rng = np.random.RandomState(seed)
    n = int(round(seconds * rate))
    t = np.arange(n) / rate
    x = 0.01 * rng.randn(n, channels)
    for _ in range(8):
        start, freq = rng.uniform(0, seconds * 0.8), rng.uniform(110, min(880, rate / 8))
        env = np.where(t >= start, np.exp(-(t - start) * rng.uniform(1, 4)), 0.0)
        note = sum(np.sin(2 * np.pi * freq * k * t) / k for k in (1, 2, 3))
        x += (env * note)[:, None] * rng.uniform(0.2, 1.0, channels)[None]
    return np.round(x / np.abs(x).max() * 0.5 * 32767).astype(np.int16)


@dataclasses.dataclass(frozen=True)
class Case:
    name: str  # path in the corpus folder
    kind: str  # for the table
    source: str
    lossless: bool
    slack: tuple[int, int] = (0, 0)  # decoded - expected frames at the decoded rate, min/max
    decoded_rate: int | None = None  # Opus decodes at 48 kHz
    cut: str = ""  # '' for the encoder's file, else where it was cut: header/middle/end
    original: str = ""  # the uncut file's name, for a cut one


MP3_NO_TAG = (0, 3 * 1152)  # encoder delay + padding, whole frames: no gapless info to trim
MP3_LSF_NO_TAG = (0, 3 * 1152)


def _cases() -> list[tuple[Case, list[str] | None]]:
    """(case, command) with {src} {out} {raw} placeholders; None: made in Python."""
    c = []

    def add(name, kind, source, lossless, command, **kw):
        c.append((Case(name, kind, source, lossless, **kw), command))

    add("vorbis/q-1_44k_stereo.ogg", "Vorbis q-1, 44.1 kHz stereo (oggenc)", "44k_stereo", False,
        ["oggenc", "-Q", "-q", "-1", "{src}", "-o", "{out}"])
    add("vorbis/q3_44k_stereo_0.43s.ogg", "Vorbis q3, 0.43 s (oggenc)", "44k_stereo_short",
        False, ["oggenc", "-Q", "-q", "3", "{src}", "-o", "{out}"])
    add("vorbis/q8_44k_stereo_6.8s.ogg", "Vorbis q8, 6.8 s (oggenc)", "44k_stereo_long", False,
        ["oggenc", "-Q", "-q", "8", "{src}", "-o", "{out}"])
    add("vorbis/22k_mono.ogg", "Vorbis 22.05 kHz mono (oggenc)", "22k_mono", False,
        ["oggenc", "-Q", "{src}", "-o", "{out}"])
    add("vorbis/48k_5.1.ogg", "Vorbis 48 kHz 5.1 (oggenc)", "48k_5.1", False,
        ["oggenc", "-Q", "{src}", "-o", "{out}"])
    add("vorbis/8k_mono.ogg", "Vorbis 8 kHz mono (oggenc)", "8k_mono", False,
        ["oggenc", "-Q", "{src}", "-o", "{out}"])
    add("vorbis/96k_stereo.ogg", "Vorbis 96 kHz stereo (oggenc)", "96k_stereo", False,
        ["oggenc", "-Q", "{src}", "-o", "{out}"])
    add("vorbis/ffmpeg_libvorbis.ogg", "Vorbis 44.1 kHz stereo (ffmpeg libvorbis)", "44k_stereo",
        False, ["ffmpeg", "-loglevel", "error", "-i", "{src}", "-c:a", "libvorbis", "{out}"])
    # The soundtrack: the last granule position lies past the decoded end, so the
    # header "declares" ~100 frames more than decode. libvorbis then trims nothing.
    add("vorbis/granule_past_end.ogg", "Vorbis, last granule 104 frames past the end",
        "44k_stereo", False, None, slack=(0, 2048))
    add("vorbis/chained.ogg", "Vorbis, two chained streams (cat a.ogg b.ogg)", "44k_stereo",
        False, None)
    add("opus/44k_stereo.opus", "Opus from 44.1 kHz stereo (opusenc)", "44k_stereo", False,
        ["opusenc", "--quiet", "{src}", "{out}"], decoded_rate=48000, slack=(-1, 1))
    # libsndfile decodes Opus at the Opus rate nearest the source's: 24 kHz here.
    add("opus/22k_mono.opus", "Opus from 22.05 kHz mono (opusenc)", "22k_mono", False,
        ["opusenc", "--quiet", "{src}", "{out}"], decoded_rate=24000, slack=(-1, 1))
    add("opus/48k_5.1.opus", "Opus 48 kHz 5.1 (opusenc)", "48k_5.1", False,
        ["opusenc", "--quiet", "{src}", "{out}"], decoded_rate=48000, slack=(-1, 1))
    add("opus/ffmpeg_libopus.opus", "Opus from 44.1 kHz stereo (ffmpeg libopus)", "44k_stereo",
        False, ["ffmpeg", "-loglevel", "error", "-i", "{src}", "-c:a", "libopus", "{out}"],
        decoded_rate=48000, slack=(-1, 1))
    add("mp3/cbr128_lame_tag.mp3", "MP3 CBR 128k, LAME gapless tag (lame)", "44k_stereo", False,
        ["lame", "--quiet", "-b", "128", "{src}", "{out}"])
    add("mp3/cbr128_no_tag.mp3", "MP3 CBR 128k, no LAME tag (lame -t)", "44k_stereo", False,
        ["lame", "--quiet", "-t", "-b", "128", "{src}", "{out}"], slack=MP3_NO_TAG)
    add("mp3/vbr_lame_tag.mp3", "MP3 VBR V2, Xing + LAME tag (lame)", "44k_stereo", False,
        ["lame", "--quiet", "-V", "2", "{src}", "{out}"])
    add("mp3/vbr_no_xing.mp3", "MP3 VBR V2, no Xing header (lame -t)", "44k_stereo_long", False,
        ["lame", "--quiet", "-t", "-V", "2", "{src}", "{out}"], slack=MP3_NO_TAG)
    add("mp3/id3v2_album_art.mp3", "MP3 VBR, ID3v2 tags + 90 KB album art (lame --ti)",
        "44k_stereo", False, ["lame", "--quiet", "-V", "4", "--add-id3v2", "--tt", "Title",
                              "--ta", "Artist", "--ti", "{art}", "{src}", "{out}"])
    # At 96 kbit/s lame resamples 44.1 kHz to 32 kHz by itself.
    add("mp3/id3v1.mp3", "MP3 CBR 96k, ID3v1 tag at the end, 32 kHz (lame)", "44k_stereo",
        False, ["lame", "--quiet", "-b", "96", "--id3v1-only", "--tt", "Title", "{src}",
                "{out}"], decoded_rate=32000, slack=(-1, 1))
    add("mp3/mpeg2_22k_mono.mp3", "MP3 MPEG-2 22.05 kHz mono VBR (lame)", "22k_mono", False,
        ["lame", "--quiet", "-V", "5", "{src}", "{out}"])
    add("mp3/mpeg2.5_8k_mono_no_tag.mp3", "MP3 MPEG-2.5 8 kHz mono, no tag (lame -t)",
        "8k_mono", False, ["lame", "--quiet", "-t", "-b", "16", "{src}", "{out}"],
        slack=MP3_LSF_NO_TAG)
    add("mp3/ffmpeg_libmp3lame.mp3", "MP3 (ffmpeg libmp3lame, ID3v2 + Lavc tag)",
        "44k_stereo", False, ["ffmpeg", "-loglevel", "error", "-i", "{src}", "-c:a",
                              "libmp3lame", "-q:a", "4", "-metadata", "title=Song", "{out}"])
    add("flac/44k_stereo.flac", "FLAC 16-bit 44.1 kHz stereo (flac)", "44k_stereo", True,
        ["flac", "-s", "{src}", "-o", "{out}"])
    add("flac/stream_no_total.flac", "FLAC encoded from a pipe: no total in STREAMINFO",
        "44k_stereo", True, None)
    add("flac/96k_24bit.flac", "FLAC 24-bit 96 kHz (flac from a 24-bit WAV)", "96k_stereo", True,
        None)
    add("flac/48k_5.1.flac", "FLAC 48 kHz 5.1 (flac)", "48k_5.1", True,
        ["flac", "-s", "{src}", "-o", "{out}"])
    add("flac/tags_picture.flac", "FLAC with tags and a PICTURE block (flac --picture)",
        "22k_mono", True, ["flac", "-s", "-T", "ARTIST=Someone", "--picture={art}", "{src}",
                           "-o", "{out}"])
    add("flac/id3v2_prefixed.flac", "FLAC behind an ID3v2 tag (as some taggers write)",
        "22k_mono", True, None)
    add("flac/ffmpeg_8k.flac", "FLAC 8 kHz mono (ffmpeg)", "8k_mono", True,
        ["ffmpeg", "-loglevel", "error", "-i", "{src}", "-c:a", "flac", "{out}"])
    add("wav/sox_16bit.wav", "WAV 16-bit (sox)", "44k_stereo", True,
        ["sox", "{src}", "{out}"])
    add("wav/stream_size_ffffffff.wav", "WAV written to a pipe: sizes 0xFFFFFFFF (ffmpeg)",
        "44k_stereo", True, None)
    add("wav/stream_size_0.wav", "WAV written as a stream: data size 0", "22k_mono", True,
        None)
    add("wav/list_bext_before_data.wav", "WAV with LIST and bext before data (ffmpeg)",
        "44k_stereo", True, ["ffmpeg", "-loglevel", "error", "-i", "{src}", "-write_bext", "1",
                             "-metadata", "title=Song", "-c:a", "pcm_s16le", "{out}"])
    add("wav/chunks_before_data.wav", "WAV with LIST, cue and bext before data", "8k_mono",
        True, None)
    add("wav/chunks_after_data.wav", "WAV with LIST, cue and bext after data", "22k_mono", True,
        None)
    add("wav/extensible_24bit_96k.wav", "WAVE_FORMAT_EXTENSIBLE 24-bit 96 kHz (ffmpeg)",
        "96k_stereo", True, ["ffmpeg", "-loglevel", "error", "-i", "{src}", "-c:a",
                             "pcm_s24le", "{out}"])
    add("wav/extensible_float32_5.1.wav", "WAVE_FORMAT_EXTENSIBLE 32-bit float 5.1 (ffmpeg)",
        "48k_5.1", True, ["ffmpeg", "-loglevel", "error", "-i", "{src}", "-c:a", "pcm_f32le",
                          "{out}"])
    add("wav/rf64.wav", "RF64 (ffmpeg -rf64 always)", "22k_mono", True,
        ["ffmpeg", "-loglevel", "error", "-i", "{src}", "-c:a", "pcm_s16le", "-rf64", "always",
         "{out}"])
    add("wav/8k_mono.wav", "WAV 8 kHz mono (sox)", "8k_mono", True, ["sox", "{src}", "{out}"])
    add("aiff/sox_16bit.aiff", "AIFF 16-bit (sox)", "44k_stereo", True, ["sox", "{src}", "{out}"])
    add("aiff/sox_24bit_96k.aiff", "AIFF 24-bit 96 kHz (sox)", "96k_stereo", True,
        ["sox", "{src}", "-b", "24", "{out}"])
    add("aiff/sox_5.1.aiff", "AIFF 48 kHz 5.1 (sox)", "48k_5.1", True,
        ["sox", "{src}", "{out}"])
    add("aiff/aifc_none.aifc", "AIFF-C, uncompressed (sox)", "22k_mono", True,
        ["sox", "{src}", "-t", "aifc", "{out}"])
    add("aiff/aifc_sowt.aifc", "AIFF-C sowt, little-endian (ffmpeg)", "44k_stereo", True,
        ["ffmpeg", "-loglevel", "error", "-i", "{src}", "-c:a", "pcm_s16le", "-f", "aiff",
         "{out}"])
    add("aiff/aifc_fl32.aifc", "AIFF-C fl32, 32-bit float (ffmpeg)", "8k_mono", True,
        ["ffmpeg", "-loglevel", "error", "-i", "{src}", "-c:a", "pcm_f32be", "-f", "aiff",
         "{out}"])
    return c


def _chunk(name: bytes, body: bytes) -> bytes:
    return name + struct.pack("<I", len(body)) + body + (b"\0" if len(body) % 2 else b"")


def _id3v2(frames: bytes) -> bytes:
    n = len(frames)
    return b"ID3\x03\x00\x00" + bytes([(n >> 21) & 127, (n >> 14) & 127, (n >> 7) & 127,
                                         n & 127]) + frames


def _ogg_crc(data: bytes) -> int:
    crc = 0
    for byte in data:
        crc ^= byte << 24
        for _ in range(8):
            crc = ((crc << 1) ^ 0x04C11DB7) & 0xFFFFFFFF if crc & 0x80000000 else (crc << 1) \
                & 0xFFFFFFFF
    return crc


def _move_last_granule(ogg: bytes, delta: int) -> bytes:
    last = ogg.rfind(b"OggS")
    page = bytearray(ogg[last:])
    granule = struct.unpack("<q", page[6:14])[0]
    page[6:14] = struct.pack("<q", granule + delta)
    page[22:26] = b"\0\0\0\0"
    page[22:26] = struct.pack("<I", _ogg_crc(bytes(page)))
    return ogg[:last] + bytes(page)


def _made_in_python(case: Case, src: str, out: str, tmp: str) -> None:
    run = lambda *cmd, **kw: subprocess.run(cmd, check=True, **kw)  # noqa: E731
    if case.name == "vorbis/granule_past_end.ogg":
        run("oggenc", "-Q", src, "-o", out + ".tmp")
        data = open(out + ".tmp", "rb").read()
        open(out, "wb").write(_move_last_granule(data, 104))
        os.remove(out + ".tmp")
    elif case.name == "vorbis/chained.ogg":
        run("oggenc", "-Q", src, "-o", out + ".tmp")
        data = open(out + ".tmp", "rb").read()
        open(out, "wb").write(data + data)  # a second link: the same serial ends first
        os.remove(out + ".tmp")
    elif case.name == "flac/stream_no_total.flac":
        raw, rate = sf.read(src, dtype="int16", always_2d=True)
        with open(out, "wb") as o:  # raw samples from a pipe: flac cannot know the length
            run("flac", "-s", "--force-raw-format", "--endian=little", "--sign=signed",
                f"--channels={raw.shape[1]}", "--bps=16", f"--sample-rate={rate}", "-", "-c",
                input=raw.tobytes(), stdout=o, stderr=subprocess.DEVNULL)
    elif case.name == "flac/96k_24bit.flac":
        wav24 = os.path.join(tmp, "src24.wav")
        run("ffmpeg", "-loglevel", "error", "-y", "-i", src, "-c:a", "pcm_s24le", wav24)
        run("flac", "-s", wav24, "-o", out, stderr=subprocess.DEVNULL)  # ffmpeg's LIST: noise
    elif case.name == "flac/id3v2_prefixed.flac":
        run("flac", "-s", src, "-o", out + ".tmp")
        tag = _id3v2(b"TIT2" + struct.pack(">I", 6) + b"\0\0" + b"\0Title")
        open(out, "wb").write(tag + open(out + ".tmp", "rb").read())
        os.remove(out + ".tmp")
    elif case.name == "wav/stream_size_ffffffff.wav":
        with open(out, "wb") as o:
            run("ffmpeg", "-loglevel", "error", "-i", src, "-c:a", "pcm_s16le", "-f", "wav",
                "pipe:1", stdout=o)
    elif case.name == "wav/stream_size_0.wav":
        data = bytearray(open(src, "rb").read())
        at = data.find(b"data")
        data[4:8] = data[at + 4:at + 8] = b"\0\0\0\0"
        open(out, "wb").write(bytes(data))
    elif case.name in ("wav/chunks_before_data.wav", "wav/chunks_after_data.wav"):
        data = open(src, "rb").read()
        extra = (_chunk(b"LIST", b"INFO" + _chunk(b"INAM", b"Song\0"))
                 + _chunk(b"cue ", struct.pack("<I", 1) + struct.pack("<II4sIII", 1, 0, b"data",
                                                                      0, 0, 4410))
                 + _chunk(b"bext", b"\0" * 602))
        at = data.find(b"data") if "before" in case.name else len(data)
        data = data[:at] + extra + data[at:]
        open(out, "wb").write(data[:4] + struct.pack("<I", len(data) - 8) + data[8:])
    else:
        raise ValueError(case.name)


def _art(tmp: str) -> str:
    """A ~90 KB JPEG cover (random pixels do not compress)."""
    from PIL import Image

    path = os.path.join(tmp, "cover.jpg")
    pixels = np.random.RandomState(7).randint(0, 256, (200, 200, 3), np.uint8)
    Image.fromarray(pixels).save(path, quality=95)
    return path


# Where each file is cut: inside its header (or its ID3v2 tag), in the middle (odd offsets:
# mid-page, mid-frame, mid-sample), and near its end (the last page, frame or samples).
def cut_points(size: int, audio_start: int) -> dict[str, int]:
    return {"header": min(20, size - 1) if audio_start < 40 else audio_start // 2,
            "middle": size * 45 // 100 | 1,
            "end": (size - max(3, size // 50)) | 1}


def build(root: str) -> tuple[list[Case], dict[str, np.ndarray]]:
    """Writes the corpus under ROOT; returns the cases (the uncut ones first) and the sources
    (int16 [frames, channels]) by name."""
    missing = missing_encoders()
    if missing:
        raise RuntimeError(f"the real-encoder corpus needs {', '.join(missing)}: install them "
                           f"(Debian: apt-get install {' '.join(ENCODERS.values())}); "
                           f"`make test` installs them")
    tmp = os.path.join(root, ".sources")
    os.makedirs(tmp, exist_ok=True)
    sources, src_paths = {}, {}
    for i, (name, (rate, channels, seconds)) in enumerate(SOURCES.items()):
        sources[name] = synth(rate, channels, seconds, seed=i)
        src_paths[name] = os.path.join(tmp, f"{name}.wav")
        # More than two channels need WAVE_FORMAT_EXTENSIBLE's channel mask for the encoders.
        sf.write(src_paths[name], sources[name], rate, subtype="PCM_16",
                 format="WAVEX" if channels > 2 else "WAV")
    art = _art(tmp)
    cases = []
    for case, command in _cases():
        out = os.path.join(root, case.name)
        os.makedirs(os.path.dirname(out), exist_ok=True)
        src = src_paths[case.source]
        if command is None:
            _made_in_python(case, src, out, tmp)
        else:
            subprocess.run([a.format(src=src, out=out, art=art) for a in command], check=True,
                           stdin=subprocess.DEVNULL)
        cases.append(case)
    cut_cases = []
    for case in cases:
        data = open(os.path.join(root, case.name), "rb").read()
        audio_start = _audio_start(data)
        for cut, at in cut_points(len(data), audio_start).items():
            stem, ext = os.path.splitext(case.name)
            name = f"cut/{stem}.{cut}{ext}"
            os.makedirs(os.path.dirname(os.path.join(root, name)), exist_ok=True)
            with open(os.path.join(root, name), "wb") as f:
                f.write(data[:at])
            cut_cases.append(dataclasses.replace(case, name=name, cut=cut, original=case.name,
                                                 kind=f"{case.kind}, cut {cut}"))
    return cases + cut_cases, sources


def _audio_start(data: bytes) -> int:
    """Bytes of an ID3v2 tag at the start (a cut 'inside the header' cuts it), else 0."""
    from jukebox_tf.audio.containers import id3v2_end

    return id3v2_end(data)


def expected_frames(case: Case, sources: dict) -> int:
    rate, _, _ = SOURCES[case.source]
    n = len(sources[case.source]) * (2 if case.name == "vorbis/chained.ogg" else 1)
    return int(n * (case.decoded_rate or rate) / rate)


def table(cases: list[Case], manifest: dict) -> str:
    """Markdown: file kind -> outcome (kept / flagged with the reason / rejected)."""
    tracks = {t["track_id"]: t for t in manifest["tracks"]}
    flags = {}
    for flag in manifest["flagged"]:
        flags[flag["path"]] = flags.get(flag["path"], ()) + (flag["reason"],)
    rejected = {r["path"]: r["reason"] for r in manifest["rejected"]}
    lines = ["| file | kind | outcome |", "| --- | --- | --- |"]
    for case in cases:
        if case.name in rejected:
            outcome = f"rejected: {rejected[case.name]}"
        elif case.name in flags:
            outcome = "flagged: " + " / ".join(flags[case.name])
        else:
            outcome = f"ingested, {tracks[case.name]['seconds']:.3f} s"
        lines.append(f"| {case.name} | {case.kind} | {outcome} |")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    from jukebox_tf.audio.ingest import IngestConfig, ingest

    out = sys.argv[1]
    built, _ = build(os.path.join(out, "corpus"))
    result = ingest(os.path.join(out, "corpus"), os.path.join(out, "dataset"),
                    IngestConfig(sample_rate=22050), progress=False)
    print(table(built, result))
