"""Ingest end to end: good files land in shards with their labels, every kind of bad input is
rejected with a reason while the rest goes on, interrupted runs finish on a rerun."""

import json
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import soundfile as sf
import tensorflow as tf

from conftest import tone, write_wav_header_only
from jukebox_tf.audio import records, schema
from jukebox_tf.audio.ingest import IngestConfig, IngestError, ingest
from jukebox_tf.audio.resample import resample


def parse_all(out_dir):
    manifest = json.loads((out_dir / "dataset.json").read_text())
    examples = []
    for shard in manifest["shards"]:
        for raw in records.read_records(str(out_dir / shard["file"])):
            f = tf.train.Example.FromString(raw).features.feature
            ex = {k: (v.bytes_list.value or v.int64_list.value or v.float_list.value)
                  for k, v in f.items()}
            ex = {k: v[0] if len(v) == 1 and k not in ("genre", "genre_ids") else list(v)
                  for k, v in ex.items()}
            ex["audio"] = schema.from_pcm16(ex["audio"], ex["channels"])
            ex["shard"] = shard["file"]
            examples.append(ex)
    return manifest, examples


@pytest.fixture
def bad_input_dir(tmp_path, write_audio):
    """A folder with good files and one of every kind of bad input."""
    write_audio("good/a.wav", tone(25.0, 44100, 440.0), 44100)
    write_audio("good/b.flac", tone(7.0, 32000, 220.0, channels=2), 32000)
    write_audio("good/c.ogg", tone(5.0, 48000, 330.0), 48000)
    write_audio("good/d.mp3", tone(4.0, 44100, 550.0), 44100)
    write_audio("silent.wav", np.zeros(44100 * 3, np.float32), 44100)
    src = tmp_path / "in"
    (src / "empty.wav").write_bytes(b"")
    trunc = write_audio("truncated.flac", tone(4.0, 44100, 300.0), 44100)
    trunc.write_bytes(trunc.read_bytes()[: trunc.stat().st_size // 2])
    (src / "text.wav").write_text("just some text\n" * 20)
    (src / "song.m4a").write_bytes(b"\x00\x00\x00\x20ftypM4A " + b"\x00" * 64)
    write_audio("zero.wav", np.zeros(0, np.float32), 44100)
    nan = tone(2.0, 22050)
    nan[100] = np.nan
    write_audio("nan.wav", nan, 22050, subtype="FLOAT")
    write_wav_header_only(src / "rate1.wav", rate=1)
    (src / "cover.jpg").write_bytes(b"\xff\xd8\xff\xe0 not audio")
    (src / "metadata.csv").write_bytes(
        b"path,artist,genre,lyrics\n"
        b"good/a.wav,Alice,rock pop,\"la la, la\nsecond line\"\n"
        b"good/b.flac,Bob,jazz,\n"
        b"good/c.ogg,Caf\xe9 Band,jazz,\n"
        b"missing.wav,Nobody,rock,\n")
    return src


EXPECTED_REJECTIONS = {
    "empty.wav": "empty file (0 bytes)",
    "text.wav": "not an audio file: unrecognised header bytes b'just som'",
    "song.m4a": "unsupported format '.m4a'",
    "zero.wav": "zero-length audio",
    "nan.wav": "contains NaN/inf samples (first at frame 100)",
    "rate1.wav": "sample rate 1 Hz is outside the resampler's supported range",
    "missing.wav": "listed in metadata.csv (row 4) but the file does not exist",
}


def test_bad_inputs_are_rejected_and_the_rest_is_ingested(bad_input_dir, tmp_path):
    out = tmp_path / "out"
    config = IngestConfig(sample_rate=22050, chunk_seconds=10.0, workers=2)
    manifest = ingest(str(bad_input_dir), str(out), config, progress=False)

    reasons = {r["path"]: r["reason"] for r in manifest["rejected"]}
    for path, reason in EXPECTED_REJECTIONS.items():
        assert reason in reasons.pop(path), path
    # The mis-encoded metadata row is reported against the metadata file; its audio file is
    # still ingested, as 'unknown'.
    (meta_problem,) = reasons.values()
    assert "row 3: field 'artist' is not valid UTF-8 (byte 0xE9)" in meta_problem
    (silent, truncated) = manifest["flagged"]
    assert silent == {"path": "silent.wav",
                      "reason": "all-silent audio (peak below -80 dBFS); kept"}
    # Cut in half: what decodes is kept, and the flag says why and how much.
    kept = next(t["seconds"] for t in manifest["tracks"] if t["track_id"] == "truncated.flac")
    assert 1.0 < kept < 3.0
    assert truncated["path"] == "truncated.flac"
    assert truncated["reason"].startswith("truncated: the header declares 4.00 s, ")
    assert truncated["reason"].endswith(f"; kept {kept:.2f} s of 4.00 s")
    assert manifest["ignored"] == [{"path": "cover.jpg", "reason": "not an audio file"}]
    counts = manifest["counts"]
    assert (counts["files_ok"], counts["files_rejected"], counts["files_flagged"]) == (6, 8, 2)
    assert manifest["artists"] == ["unknown", "Alice", "Bob"]
    assert manifest["genres"] == ["unknown", "jazz", "pop", "rock"]
    assert (out / "artists.txt").read_text().splitlines() == manifest["artists"]
    assert not (out / ".ingest-parts").exists()

    _, examples = parse_all(out)
    by_track = {}
    for ex in examples:
        by_track.setdefault(ex["track_id"].decode(), []).append(ex)
    assert sorted(by_track) == ["good/a.wav", "good/b.flac", "good/c.ogg", "good/d.mp3",
                                "silent.wav", "truncated.flac"]
    # The chunks of a truncated track carry the length its header declares (the song's).
    assert {e["track_length"] for e in by_track["truncated.flac"]} == {4 * 22050}
    a = sorted(by_track["good/a.wav"], key=lambda e: e["offset"])
    assert [e["offset"] for e in a] == [0, 220500, 441000]
    assert [e["num_samples"] for e in a] == [220500, 220500, 110250]
    assert {e["track_length"] for e in a} == {551250}
    assert (a[0]["artist"], a[0]["artist_id"]) == (b"Alice", 1)
    assert (a[0]["genre"], a[0]["genre_ids"]) == ([b"rock", b"pop"], [3, 2])
    assert a[0]["lyrics"].decode() == "la la, la\nsecond line"
    assert {e["sample_rate"] for e in examples} == {22050}
    assert {e["schema_version"] for e in examples} == {1}
    # The stored audio is the band-limited resampling of the source, to 16-bit precision.
    expected = resample(tone(25.0, 44100, 440.0), 44100, 22050)
    got = np.concatenate([e["audio"][:, 0] for e in a])
    np.testing.assert_allclose(got, expected, atol=1.5 / 32768)
    b = by_track["good/b.flac"][0]
    assert b["audio"].shape == (7 * 22050, 1)  # stereo mixed to mono
    c = by_track["good/c.ogg"][0]
    assert (c["artist"], c["artist_id"]) == (b"unknown", 0)
    assert by_track["silent.wav"][0]["silent"] == 1 and a[0]["silent"] == 0
    assert manifest["total_seconds"] == pytest.approx(25 + 7 + 5 + 4 + 3 + kept, abs=0.01)


def test_strict_ingest_rejects_the_truncated_file(bad_input_dir, tmp_path):
    config = IngestConfig(sample_rate=22050, chunk_seconds=10.0, workers=1, strict=True)
    manifest = ingest(str(bad_input_dir), str(tmp_path / "out"), config, progress=False)
    reasons = {r["path"]: r["reason"] for r in manifest["rejected"]}
    assert reasons["truncated.flac"].startswith("truncated: the header declares 4.00 s, ")
    assert reasons["truncated.flac"].endswith("; rejected (strict)")
    assert [f["path"] for f in manifest["flagged"]] == ["silent.wav"]
    assert "truncated.flac" not in {t["track_id"] for t in manifest["tracks"]}


def test_stereo_and_overlapping_chunks(tmp_path, write_audio):
    x = tone(3.0, 22050, channels=2)
    write_audio("s.wav", x, 22050)
    out = tmp_path / "out"
    ingest(str(tmp_path / "in"), str(out), IngestConfig(
        sample_rate=22050, channels=2, chunk_seconds=1.0, hop_seconds=0.5, workers=1),
        progress=False)
    _, examples = parse_all(out)
    assert [e["offset"] for e in examples] == [0, 11025, 22050, 33075, 44100]
    assert [len(e["audio"]) for e in examples] == [22050] * 5
    for e in examples:
        # The source is 16-bit: same rate, so bit-exact.
        source = sf.read(str(tmp_path / "in" / "s.wav"), dtype="float32")[0]
        np.testing.assert_array_equal(e["audio"], source[e["offset"]:e["offset"] + 22050])


def test_symlinked_duplicates_are_ingested_once(tmp_path, write_audio):
    write_audio("audio/a.wav", tone(1.0, 8000), 8000)
    (tmp_path / "in" / "en").mkdir()
    (tmp_path / "in" / "en" / "a.wav").symlink_to(tmp_path / "in" / "audio" / "a.wav")
    (tmp_path / "in" / "linked").symlink_to(tmp_path / "in" / "audio")
    manifest = ingest(str(tmp_path / "in"), str(tmp_path / "out"), IngestConfig(
        sample_rate=8000, workers=1), progress=False)
    assert [t["track_id"] for t in manifest["tracks"]] == ["audio/a.wav"]
    assert manifest["ignored"] == [{"path": "en/a.wav", "reason": "same file as audio/a.wav"}]


def test_mono_mix_is_the_channel_mean(tmp_path, write_audio):
    x = np.stack([tone(1.0, 8000, 300.0), tone(1.0, 8000, 500.0, amp=0.2),
                  tone(1.0, 8000, 700.0, amp=0.1)], axis=1)
    write_audio("three.flac", x, 8000, subtype="PCM_24")
    ingest(str(tmp_path / "in"), str(tmp_path / "out"), IngestConfig(
        sample_rate=8000, workers=1), progress=False)
    _, (example,) = parse_all(tmp_path / "out")
    source = sf.read(str(tmp_path / "in" / "three.flac"), dtype="float32")[0]
    np.testing.assert_allclose(example["audio"][:, 0], source.mean(axis=1), atol=0.6 / 32768)


def test_shards_hold_whole_tracks(tmp_path, write_audio):
    for i in range(5):
        write_audio(f"t{i}.wav", tone(1.0 + i, 8000), 8000)
    out = tmp_path / "out"
    manifest = ingest(str(tmp_path / "in"), str(out), IngestConfig(
        sample_rate=8000, chunk_seconds=1.0, shards=2, workers=1), progress=False)
    assert [s["file"] for s in manifest["shards"]] == ["data-00000-of-00002.tfrecord",
                                                      "data-00001-of-00002.tfrecord"]
    _, examples = parse_all(out)
    shard_of = {}
    for e in examples:
        assert shard_of.setdefault(e["track_id"], e["shard"]) == e["shard"]
    assert sum(s["chunks"] for s in manifest["shards"]) == len(examples) == 15
    # A rerun asking for one shard replaces the two old ones.
    manifest = ingest(str(tmp_path / "in"), str(out), IngestConfig(
        sample_rate=8000, chunk_seconds=1.0, shards=1, workers=1), progress=False)
    assert sorted(p.name for p in out.glob("*.tfrecord")) == ["data-00000-of-00001.tfrecord"]


def test_whole_run_errors_are_clear(tmp_path):
    with pytest.raises(IngestError, match="input folder '.*nope' does not exist"):
        ingest(str(tmp_path / "nope"), str(tmp_path / "out"))
    (tmp_path / "in").mkdir()
    with pytest.raises(IngestError, match="metadata file '.*meta.csv' does not exist"):
        ingest(str(tmp_path / "in"), str(tmp_path / "out"),
               metadata_path=str(tmp_path / "meta.csv"))
    with pytest.raises(IngestError, match="--hop-seconds must be in"):
        IngestConfig(chunk_seconds=1.0, hop_seconds=2.0)
    with pytest.raises(IngestError, match="--sample-rate: sample rate 100 Hz is outside"):
        IngestConfig(sample_rate=100)


def test_failure_while_writing_shards_leaves_no_partial_shard(tmp_path, write_audio,
                                                              monkeypatch):
    for i in range(3):
        write_audio(f"t{i}.wav", tone(2.0, 8000, 200.0 * (i + 1)), 8000)
    out = tmp_path / "out"
    config = IngestConfig(sample_rate=8000, chunk_seconds=1.0, shards=3, workers=1)
    ingest(str(tmp_path / "in"), str(out), config, progress=False)
    reference = {p.name: p.read_bytes() for p in out.glob("*.tfrecord")}

    import shutil
    real_copy, calls = shutil.copyfileobj, []

    def dying_copy(src, dst, length=0):
        calls.append(1)
        if len(calls) == 2:
            dst.write(src.read(10))
            raise OSError("disk full (simulated)")
        return real_copy(src, dst, length)

    monkeypatch.setattr(shutil, "copyfileobj", dying_copy)
    with pytest.raises(OSError, match="disk full"):
        ingest(str(tmp_path / "in"), str(out), config, progress=False)
    assert not (out / "dataset.json").exists()  # the folder does not look complete
    assert not list(out.glob("*.tmp-*"))
    for shard in out.glob("*.tfrecord"):  # every shard under a final name is whole
        list(records.read_records(str(shard)))

    monkeypatch.setattr(shutil, "copyfileobj", real_copy)
    manifest = ingest(str(tmp_path / "in"), str(out), config, progress=False)
    assert manifest["counts"]["files_reused"] == 3  # decoded tracks were kept for the rerun
    assert {p.name: p.read_bytes() for p in out.glob("*.tfrecord")} == reference


@pytest.mark.slow
def test_sigkill_mid_ingest_then_rerun_finishes_the_job(tmp_path, write_audio, cli):
    for i in range(8):
        write_audio(f"t{i}.flac", tone(60.0, 44100, 100.0 * (i + 1)), 44100)
    out = tmp_path / "out"
    args = [sys.executable, "-m", "jukebox_tf", "ingest", str(tmp_path / "in"), str(out),
            "--sample-rate", "22050", "--workers", "1", "--quiet"]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    parts = out / ".ingest-parts"
    deadline = time.time() + 120
    # A track is finished when its summary (.json, written after the part) exists: killing
    # between the two leaves a part that a rerun must decode again.
    while not list(parts.glob("*.json")) and time.time() < deadline:
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done_parts = list(parts.glob("*.json"))
    assert 1 <= len(done_parts) < 8
    assert not (out / "dataset.json").exists()
    assert not list(out.glob("data-*.tfrecord"))

    result = cli("ingest", tmp_path / "in", out, "--sample-rate", "22050", "--quiet",
                 check=True)
    assert "reused" in result.stdout
    manifest = json.loads((out / "dataset.json").read_text())
    assert manifest["counts"]["files_ok"] == 8
    assert manifest["counts"]["files_reused"] >= len(done_parts)
    fresh = tmp_path / "fresh"
    cli("ingest", tmp_path / "in", fresh, "--sample-rate", "22050", "--quiet", check=True)
    for shard in manifest["shards"]:
        assert (out / shard["file"]).read_bytes() == (fresh / shard["file"]).read_bytes()


# VmHWM (peak RSS of this address space), not ru_maxrss: Linux keeps ru_maxrss across execve,
# so the child would report the TensorFlow-sized peak of the pytest process that forked it.
MEASURE = """
import re, sys
from jukebox_tf.audio.ingest import IngestConfig, ingest
m = ingest(sys.argv[1], sys.argv[2], IngestConfig(sample_rate=22050, workers=1), progress=False)
hwm_kb = int(re.search(r"VmHWM:\\s+(\\d+)", open("/proc/self/status").read()).group(1))
print(m["total_seconds"], hwm_kb // 1024)
"""


def peak_rss_mb(src, out):
    result = subprocess.run([sys.executable, "-c", MEASURE, str(src), str(out)],
                            capture_output=True, text=True, check=True)
    seconds, rss = result.stdout.split()
    return float(seconds), int(rss)


@pytest.mark.slow
def test_hours_long_file_streams_in_bounded_memory(tmp_path):
    # One hour at 8 kHz decodes and upsamples to 317 MB of float32 at 22050 Hz; streaming
    # keeps the peak within a few blocks of what a one-minute file needs.
    for name, seconds in (("short", 60), ("long", 3600)):
        src = tmp_path / name
        src.mkdir()
        with sf.SoundFile(str(src / "x.wav"), "w", 8000, 1, "PCM_16") as f:
            block = tone(60.0, 8000, 440.0, amp=0.3)
            for _ in range(seconds // 60):
                f.write(block)
    short_seconds, short_rss = peak_rss_mb(tmp_path / "short", tmp_path / "out_short")
    long_seconds, long_rss = peak_rss_mb(tmp_path / "long", tmp_path / "out_long")
    assert (short_seconds, long_seconds) == (60.0, 3600.0)
    assert long_rss - short_rss < 64, (short_rss, long_rss)
    assert long_rss < 200
