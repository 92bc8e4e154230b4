"""Decoding: every kind of bad file fails with its own one-line reason; good files stream."""

import re

import numpy as np
import pytest
import soundfile as sf

from conftest import tone, write_wav_header_only
from jukebox_tf.audio.decode import AudioError, AudioReader, sniff


def decode_all(path, block=4096):
    with AudioReader(str(path)) as reader:
        return reader.info, np.concatenate(list(reader.blocks(block)))


@pytest.mark.parametrize("fmt,ext,subtype", [("WAV", "wav", "PCM_16"), ("FLAC", "flac", None),
                                             ("OGG", "ogg", None), ("MP3", "mp3", None),
                                             ("AIFF", "aiff", None)])
def test_formats_decode_to_the_written_signal(tmp_path, fmt, ext, subtype):
    x = tone(2.0, 22050, channels=2)
    path = tmp_path / f"a.{ext}"
    sf.write(str(path), x, 22050, format=fmt, subtype=subtype)
    info, y = decode_all(path)
    assert (info.sample_rate, info.channels, info.backend) == (22050, 2, "soundfile")
    assert info.container == {"aiff": "aiff"}.get(ext, ext)
    assert y.dtype == np.float32 and y.shape[1] == 2
    if fmt in ("WAV", "FLAC", "AIFF"):
        np.testing.assert_allclose(y, x, atol=1 / 32767)
    else:  # lossy: same length (MP3 within its padding), same loudness
        assert abs(len(y) - len(x)) < 0.02 * len(x)
        assert abs(np.sqrt(np.mean(y**2)) / np.sqrt(np.mean(x**2)) - 1) < 0.05


def test_blocks_are_bounded_and_concatenate_to_the_whole(tmp_path):
    x = tone(3.0, 8000)
    sf.write(str(tmp_path / "a.flac"), x, 8000)
    with AudioReader(str(tmp_path / "a.flac")) as reader:
        blocks = list(reader.blocks(1000))
    assert max(len(b) for b in blocks) == 1000
    np.testing.assert_allclose(np.concatenate(blocks)[:, 0], x, atol=1 / 32767)


def test_tensorflow_io_fallback_decodes_what_soundfile_refuses(tmp_path, monkeypatch):
    x = tone(1.0, 16000)
    sf.write(str(tmp_path / "a.flac"), x, 16000)

    def refuse(*args, **kwargs):
        raise sf.LibsndfileError(0, "simulated: unsupported by this libsndfile")

    monkeypatch.setattr(sf, "SoundFile", refuse)
    info, y = decode_all(tmp_path / "a.flac")
    assert info.backend == "tensorflow-io"
    assert (info.sample_rate, info.channels, info.frames) == (16000, 1, 16000)
    np.testing.assert_allclose(y[:, 0], x, atol=2 / 32767)


def expect_reason(path, match):
    with pytest.raises(AudioError, match=match) as e:
        decode_all(path)
    assert "\n" not in str(e.value)


def test_empty_file(tmp_path):
    (tmp_path / "a.wav").write_bytes(b"")
    expect_reason(tmp_path / "a.wav", r"^empty file \(0 bytes\)$")


def test_text_file_named_wav(tmp_path):
    (tmp_path / "a.wav").write_text("this is not audio\n" * 10)
    expect_reason(tmp_path / "a.wav", r"not an audio file: unrecognised header bytes b'this is '")


def test_unsupported_format(tmp_path):
    (tmp_path / "a.m4a").write_bytes(b"\x00\x00\x00\x20ftypM4A " + b"\x00" * 100)
    expect_reason(tmp_path / "a.m4a", r"unsupported format '\.m4a' \(supported: .*\.flac")


def test_zero_length_audio(tmp_path):
    sf.write(str(tmp_path / "a.wav"), np.zeros(0, np.float32), 22050)
    expect_reason(tmp_path / "a.wav", r"zero-length audio")


@pytest.mark.parametrize("ext,reason", [
    ("wav", r"truncated: the data chunk declares 3\.00 s, the file holds 1\.50 s"),
    ("flac", r"truncated: the header declares 3\.00 s, 1\.\d\d s decode \(decoder: .*flac"),
    ("mp3", r"truncated: the last MPEG audio frame is cut off \(\d+ of its \d+ bytes"),
    ("ogg", r"truncated: the last Ogg page is cut off \(\d+ of its \d+ bytes"),
])
def test_truncated_files_keep_what_decodes_or_are_rejected_when_strict(tmp_path, ext, reason):
    path = tmp_path / f"a.{ext}"
    x = tone(3.0, 44100) + 0.01 * np.random.RandomState(0).randn(3 * 44100)
    sf.write(str(path), x, 44100)
    data = path.read_bytes()
    path.write_bytes(data[:len(data) // 2])
    with AudioReader(str(path)) as reader:
        y = np.concatenate(list(reader.blocks(4096)))
    assert 0.6 * 44100 < len(y) < 2.4 * 44100
    [flag] = reader.flags
    assert re.match(reason + r".*; kept \d\.\d\d s( of 3\.00 s)?$", flag), flag
    assert f"kept {len(y) / 44100:.2f} s" in flag
    if ext in ("wav", "flac"):  # lossless: what is kept is the source's first samples
        np.testing.assert_allclose(y[:, 0], x[:len(y)], atol=1 / 32767)
    with pytest.raises(AudioError, match=reason + r".*; rejected \(strict\)$"):
        with AudioReader(str(path), strict=True) as reader:
            list(reader.blocks(4096))


def test_ogg_cut_before_its_first_audio_page_is_rejected(tmp_path):
    sf.write(str(tmp_path / "a.ogg"), tone(1.0, 44100), 44100)
    data = (tmp_path / "a.ogg").read_bytes()
    (tmp_path / "a.ogg").write_bytes(data[:len(data) // 3])
    expect_reason(tmp_path / "a.ogg", r"^truncated: the last Ogg page is cut off \(\d+ of its "
                                      r"\d+ bytes are there\); nothing decodes "
                                      r"\(libsndfile: [^)]+\)$")


def ogg_pages(data):
    pages, at = [], 0
    while at < len(data):
        count = data[at + 26]
        size = 27 + count + sum(data[at + 27:at + 27 + count])
        pages.append(data[at:at + size])
        at += size
    return pages


def test_ogg_with_a_page_missing_keeps_the_rest_and_says_so(tmp_path):
    noise = 0.3 * np.random.RandomState(0).randn(3 * 44100)  # many pages: noise compresses badly
    sf.write(str(tmp_path / "a.ogg"), noise, 44100)
    pages = ogg_pages((tmp_path / "a.ogg").read_bytes())
    assert len(pages) > 8
    (tmp_path / "gap.ogg").write_bytes(b"".join(pages[:5] + pages[6:]))
    _, whole = decode_all(tmp_path / "a.ogg")
    with AudioReader(str(tmp_path / "gap.ogg")) as reader:
        y = np.concatenate(list(reader.blocks(4096)))
    assert reader.flags == [f"Ogg pages are missing (page 5 of stream "
                            f"{int.from_bytes(pages[0][14:18], 'little'):#x} is followed by "
                            f"page 6)"]
    assert 0.5 * len(whole) < len(y) < len(whole)


def test_chained_ogg_decodes_every_stream_of_the_first_ones_format(tmp_path):
    sf.write(str(tmp_path / "a.ogg"), tone(1.0, 44100), 44100)
    sf.write(str(tmp_path / "b.ogg"), tone(2.0, 44100, 220.0), 44100)
    sf.write(str(tmp_path / "c.ogg"), tone(1.0, 22050), 22050)
    a, b, c = ((tmp_path / f"{n}.ogg").read_bytes() for n in "abc")
    (tmp_path / "abc.ogg").write_bytes(a + b + c)
    with AudioReader(str(tmp_path / "abc.ogg")) as reader:
        y = np.concatenate(list(reader.blocks(4096)))
    assert len(y) == 3 * 44100 and reader.info.frames == 3 * 44100
    np.testing.assert_allclose(y[:44100, 0], decode_all(tmp_path / "a.ogg")[1][:, 0])
    assert reader.flags == ["chained Ogg of 3 streams: skipped stream 3 (Vorbis 22050 Hz, 1 "
                            "channel(s), unlike stream 1's Vorbis 44100 Hz, 1 channel(s))"]


def test_float_wav_with_nan_and_inf(tmp_path):
    x = tone(1.0, 8000)
    x[1234] = np.nan
    sf.write(str(tmp_path / "nan.wav"), x, 8000, subtype="FLOAT")
    expect_reason(tmp_path / "nan.wav", r"contains NaN/inf samples \(first at frame 1234\)")
    x[1234], x[5000] = 0.0, -np.inf
    sf.write(str(tmp_path / "inf.wav"), x, 8000, subtype="FLOAT")
    expect_reason(tmp_path / "inf.wav", r"first at frame 5000")


def test_sniff_recognises_containers():
    assert sniff(b"RIFF\x00\x00\x00\x00WAVEfmt ") == "wav"
    assert sniff(b"fLaC\x00\x00\x00\x22") == "flac"
    assert sniff(b"OggS\x00\x02") == "ogg"
    assert sniff(b"ID3\x04\x00") == "mp3"
    assert sniff(b"\xff\xfb\x90\x00") == "mp3"
    assert sniff(b"FORM\x00\x00\x00\x00AIFF") == "aiff"
    assert sniff(b"<html>") is None


def test_odd_sample_rate_still_decodes(tmp_path):
    # Decoding is fine at any rate: the rate check belongs to the resampler (see test_resample).
    write_wav_header_only(tmp_path / "a.wav", rate=1)
    info, y = decode_all(tmp_path / "a.wav")
    assert info.sample_rate == 1 and len(y) == 100


@pytest.mark.parametrize("block", [576, 1000, 4096, 65536])
def test_mp3_blocks_equal_a_whole_file_read(tmp_path, block):
    # Pure tones make mpg123 lean on its bit reservoir; soundfile's own block reads garble
    # them (see decode._read_frames).
    x = tone(2.0, 44100, channels=2)
    sf.write(str(tmp_path / "a.mp3"), x, 44100)
    whole, _ = sf.read(str(tmp_path / "a.mp3"), dtype="float32", always_2d=True)
    _, y = decode_all(tmp_path / "a.mp3", block)
    np.testing.assert_array_equal(y, whole)
