import csv
import dataclasses
import pathlib

import numpy as np
import pytest
import soundfile as sf

from jukebox_tf.audio import demo_data
from jukebox_tf.audio.demo_data import ArtistStyle, demo_styles, make_demo_data

SECONDS = 3.0
SR = 44100


def _rows(csv_path):
    with open(csv_path, encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f))


def _decode(root, rows):
    return {r["path"]: sf.read(str(root / r["path"]), dtype="float32", always_2d=True)
            for r in rows}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("demo_a")
    csv_path = make_demo_data(root, seed=0, track_seconds=SECONDS, sample_rate=SR)
    rows = _rows(csv_path)
    return root, csv_path, rows, _decode(root, rows)


def test_returns_csv_path_with_header(corpus):
    root, csv_path, rows, _ = corpus
    assert csv_path == root / "metadata.csv"
    with open(csv_path, encoding="utf-8", newline="") as f:
        assert next(csv.reader(f)) == ["path", "artist", "genre", "lyrics"]
    assert len(rows) == 4 * 3


def test_csv_lists_exactly_the_written_files(corpus):
    root, _, rows, _ = corpus
    on_disk = {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()}
    listed = {r["path"] for r in rows}
    assert len(listed) == len(rows)
    assert on_disk == listed | {"metadata.csv"}  # also: no leftover temp files
    for r in rows:
        slug, name = r["path"].split("/")
        assert name.startswith("track_") and slug and r["artist"] and r["genre"]


def test_files_decode_to_expected_duration_and_rate(corpus):
    root, _, rows, audio = corpus
    for r in rows:
        x, sr = audio[r["path"]]
        assert sr in (SR, 32000, 48000)
        assert abs(len(x) - round(SECONDS * sr)) <= 2, r["path"]
        assert sf.info(str(root / r["path"])).samplerate == sr


def test_mixed_formats_rates_and_channels(corpus):
    _, _, rows, audio = corpus
    exts = {r["path"].rsplit(".", 1)[1] for r in rows}
    assert {"wav", "flac", "ogg"} <= exts
    if demo_data._can_write_mp3():
        assert "mp3" in exts
    rates = {sr for _, sr in audio.values()}
    assert rates - {SR}, "no track at a non-default sample rate"
    stereo = [x for x, _ in audio.values() if x.shape[1] == 2]
    assert stereo, "no stereo file"
    for x in stereo:
        assert np.abs(x[:, 0] - x[:, 1]).max() > 0.05  # really two channels, not a duplicate
    # Formats must not line up with artists, or a decoder bug would look like an artist trait.
    by_artist = {}
    for r in rows:
        by_artist.setdefault(r["artist"], set()).add(r["path"].rsplit(".", 1)[1])
    assert all(len(e) > 1 for e in by_artist.values())


def test_levels_are_normalised_without_clipping(corpus):
    _, _, _, audio = corpus
    for path, (x, _) in audio.items():
        peak = np.abs(x).max()
        assert 0.5 <= peak <= 0.95, (path, peak)
        assert np.sqrt(np.mean(x**2)) > 0.02, path  # not just a click and silence
        # Fade-in: the first millisecond is near silence.
        assert np.abs(x[:20]).max() < 0.05, path


def test_same_seed_is_deterministic(corpus, tmp_path):
    root, csv_path, rows, audio = corpus
    csv_b = make_demo_data(tmp_path, seed=0, track_seconds=SECONDS, sample_rate=SR)
    assert csv_b.read_bytes() == csv_path.read_bytes()
    audio_b = _decode(tmp_path, rows)
    for path, (x, sr) in audio.items():
        y, sr_b = audio_b[path]
        assert sr == sr_b and np.array_equal(x, y), path


def test_different_seed_gives_different_audio(corpus, tmp_path):
    _, _, rows, audio = corpus
    rows_b = _rows(make_demo_data(tmp_path, seed=1, track_seconds=SECONDS, sample_rate=SR))
    audio_b = _decode(tmp_path, rows_b)
    for path, (x, _) in audio.items():
        y, _ = audio_b[path]
        assert x.shape != y.shape or not np.allclose(x, y, atol=1e-3), path
    assert [r["lyrics"] for r in rows] != [r["lyrics"] for r in rows_b]


def _mono(x):
    return x.mean(axis=1).astype(np.float64)


def _brightness(x, sr, cutoff=3000.0):
    """Fraction of power above `cutoff`: square and plucked timbres have it, sine pads do not."""
    power = np.abs(np.fft.rfft(_mono(x))) ** 2
    freqs = np.fft.rfftfreq(len(x), 1.0 / sr)
    return float(power[freqs > cutoff].sum() / power.sum())


def _spectral_flux(x, sr):
    """Mean positive change of the log spectrum per 20 ms hop, relative to its level: note and
    drum onsets raise it, slowly swelling pads keep it low."""
    mono, hop = _mono(x), sr // 50
    n = (len(mono) - 2 * hop) // hop
    frames = np.stack([mono[i * hop : i * hop + 2 * hop] for i in range(n)]) * np.hanning(2 * hop)
    spec = np.log1p(100.0 * np.abs(np.fft.rfft(frames, axis=1)))
    flux = np.maximum(np.diff(spec, axis=0), 0.0).sum(axis=1).mean()
    return float(flux / spec.sum(axis=1).mean())


def test_artists_differ_audibly(corpus):
    _, _, rows, audio = corpus
    feats = {}
    for r in rows:
        x, sr = audio[r["path"]]
        feats.setdefault(r["genre"], []).append((_brightness(x, sr), _spectral_flux(x, sr)))
    ambient, chip, folk = (np.array(feats[g]) for g in ("ambient", "chiptune", "folk"))
    # Every track of the bright/busy artists beats every ambient track by a clear margin.
    assert chip[:, 0].min() > 5.0 * ambient[:, 0].max(), (chip[:, 0], ambient[:, 0])
    assert folk[:, 0].min() > 5.0 * ambient[:, 0].max(), (folk[:, 0], ambient[:, 0])
    assert chip[:, 1].min() > 1.3 * ambient[:, 1].max(), (chip[:, 1], ambient[:, 1])
    assert folk[:, 1].min() > 1.3 * ambient[:, 1].max(), (folk[:, 1], ambient[:, 1])


def test_lyrics_round_trip_through_csv(corpus):
    _, csv_path, rows, _ = corpus
    styles = {s.name: s for s in demo_styles(4, np.random.default_rng(0))}
    with_lyrics = [r["lyrics"] for r in rows if styles[r["artist"]].has_lyrics]
    without = [r["lyrics"] for r in rows if not styles[r["artist"]].has_lyrics]
    assert with_lyrics and without
    assert all(lyr.strip() for lyr in with_lyrics) and not any(without)
    assert any("\n" in lyr for lyr in with_lyrics)
    assert any("," in lyr for lyr in with_lyrics)
    # Multi-line, comma-bearing fields only survive if they were quoted: the raw file has more
    # lines than rows, yet DictReader still sees exactly one record per track.
    raw_lines = csv_path.read_text(encoding="utf-8").splitlines()
    assert len(raw_lines) > len(rows) + 1


def test_styles_table():
    styles = demo_styles(8, np.random.default_rng(3))
    assert len({s.name for s in styles}) == 8 and len({s.slug for s in styles}) == 8
    assert any(s.drums for s in styles) and not all(s.drums for s in styles)
    assert len({s.timbre for s in styles}) >= 4 and len({s.scale for s in styles}) >= 3
    assert all(60 <= s.tempo_bpm <= 160 for s in styles)
    with pytest.raises(dataclasses.FrozenInstanceError):
        styles[0].tempo_bpm = 1.0
    assert isinstance(styles[0], ArtistStyle)


def test_tiny_corpus_still_covers_rate_and_stereo(tmp_path):
    rows = _rows(make_demo_data(tmp_path, seed=5, num_artists=1, tracks_per_artist=2,
                                track_seconds=1.0, sample_rate=SR))
    audio = _decode(tmp_path, rows)
    assert len(rows) == 2
    assert any(sr != SR for _, sr in audio.values())
    assert any(x.shape[1] == 2 for x, _ in audio.values())


def test_interrupted_run_leaves_no_partial_files(tmp_path, monkeypatch):
    real_write = sf.write
    calls = []

    def flaky_write(file, data, samplerate, **kw):
        if isinstance(file, (str, pathlib.Path)):  # not the in-memory MP3 capability probe
            calls.append(file)
        if len(calls) == 3 and calls[-1] is file:
            # Put bytes on disk first, as a crash mid-encode would, then fail.
            real_write(file, data[: len(data) // 2], samplerate, **kw)
            raise KeyboardInterrupt
        return real_write(file, data, samplerate, **kw)

    monkeypatch.setattr(demo_data.sf, "write", flaky_write)
    with pytest.raises(KeyboardInterrupt):
        make_demo_data(tmp_path, seed=0, track_seconds=1.0)
    files = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*") if p.is_file())
    assert "metadata.csv" not in files
    assert len(files) == 2, files  # the two finished tracks, nothing half-written
    assert not any(pathlib.Path(f).name.startswith(".") for f in files)
    for f in files:
        x, sr = sf.read(str(tmp_path / f))
        assert abs(len(x) - sr * 1.0) <= 2


@pytest.mark.parametrize(
    "kwargs",
    [{"seed": -1}, {"num_artists": 0}, {"tracks_per_artist": 0}, {"track_seconds": 0.0}],
)
def test_rejects_bad_arguments(tmp_path, kwargs):
    with pytest.raises(ValueError):
        make_demo_data(tmp_path, **kwargs)
