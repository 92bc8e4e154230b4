"""Ingest on files made by real encoders (tests/encoded_corpus.py): every valid file is kept
at its source's length within its codec's slack (lossless ones sample for sample), every file
cut short is flagged with how much was kept or rejected with a one-line reason, never an
exception; `--strict` rejects what was flagged; the pipeline's AudioExampleGen agrees."""

import json
import re

import numpy as np
import pytest

import encoded_corpus
from jukebox_tf.audio.decode import AudioError, AudioReader
from jukebox_tf.audio.ingest import IngestConfig, ingest
from jukebox_tf.audio.load import load_audio
from test_pipeline_example_gen import run_executor

CONFIG = IngestConfig(sample_rate=22050, chunk_seconds=4.0, workers=2)
KEPT = re.compile(r"; kept (\d+\.\d\d) s( of (\d+\.\d\d) s)?$")


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    missing = encoded_corpus.missing_encoders()
    if missing:
        pytest.fail(f"missing encoders {', '.join(missing)}: `make test` installs them "
                    f"(apt-get install {' '.join(encoded_corpus.ENCODERS.values())})")
    root = tmp_path_factory.mktemp("encoded")
    cases, sources = encoded_corpus.build(str(root / "corpus"))
    manifest = ingest(str(root / "corpus"), str(root / "dataset"), CONFIG, progress=False)
    return root, cases, sources, manifest


def decode(path):
    with AudioReader(str(path)) as reader:
        audio = np.concatenate(list(reader.blocks(1 << 15)))
    return reader, audio


def valid(cases):
    return [c for c in cases if not c.cut]


def test_the_corpus_covers_what_users_bring(corpus):
    _, cases, _, _ = corpus
    names = " ".join(c.name for c in valid(cases))
    for kind in ("vorbis/", "opus/", "mp3/", "flac/", "wav/", "aiff/", ".aifc", "no_xing",
                 "album_art", "id3v1", "no_total", "stream_size_0", "stream_size_ffffffff",
                 "chunks_before_data", "chunks_after_data", "extensible_24bit",
                 "extensible_float32", "5.1", "8k", "96k", "mpeg2.5", "rf64", "chained"):
        assert kind in names, kind
    assert len(cases) == 4 * len(valid(cases))  # each cut at three points
    assert {c.cut for c in cases} == {"", "header", "middle", "end"}


def test_every_valid_file_decodes_to_its_source_within_the_codecs_slack(corpus):
    root, cases, sources, _ = corpus
    for case in valid(cases):
        reader, audio = decode(root / "corpus" / case.name)
        rate, channels, _ = encoded_corpus.SOURCES[case.source]
        source = sources[case.source] / 32768.0
        assert reader.flags == [], case.name
        assert (reader.info.sample_rate, audio.shape[1]) == (case.decoded_rate or rate,
                                                             channels), case.name
        extra = len(audio) - encoded_corpus.expected_frames(case, sources)
        assert case.slack[0] <= extra <= case.slack[1], (case.name, extra)
        if case.lossless:
            np.testing.assert_array_equal(audio, source.astype(np.float32), err_msg=case.name)
        else:  # same loudness: no half-decoded or garbled stream
            loudness = np.sqrt(np.mean(audio**2)) / np.sqrt(np.mean(source**2))
            assert 0.8 < loudness < 1.25, (case.name, loudness)


def test_ingest_keeps_every_valid_file_at_its_length(corpus):
    _, cases, sources, manifest = corpus
    tracks = {t["track_id"]: t for t in manifest["tracks"]}
    flagged = {f["path"] for f in manifest["flagged"]}
    rejected = {r["path"]: r["reason"] for r in manifest["rejected"]}
    for case in valid(cases):
        assert case.name not in rejected, (case.name, rejected.get(case.name))
        assert case.name not in flagged, case.name
        rate = case.decoded_rate or encoded_corpus.SOURCES[case.source][0]
        seconds = encoded_corpus.expected_frames(case, sources) / rate
        lo, hi = (seconds + s / rate for s in case.slack)
        assert lo - 1e-3 <= tracks[case.name]["seconds"] <= hi + 1e-3, case.name


def test_every_cut_file_is_flagged_with_what_was_kept_or_rejected(corpus):
    root, cases, sources, manifest = corpus
    tracks = {t["track_id"]: t for t in manifest["tracks"]}
    flags = {}
    for f in manifest["flagged"]:
        flags.setdefault(f["path"], []).append(f["reason"])
    rejected = {r["path"]: r["reason"] for r in manifest["rejected"]}
    outcomes = {"flagged": 0, "rejected": 0}
    for case in (c for c in cases if c.cut):
        if case.name in rejected:
            reason = rejected[case.name]
            assert "\n" not in reason and reason.startswith("truncated: "), (case.name, reason)
            with pytest.raises(AudioError):
                decode(root / "corpus" / case.name)
            outcomes["rejected"] += 1
            continue
        assert case.name in flags, f"{case.name}: cut short but ingested without a flag"
        [flag] = flags[case.name]
        assert flag.startswith(("truncated: ", "damaged: ")), (case.name, flag)
        reader, audio = decode(root / "corpus" / case.name)
        [own] = reader.flags
        assert own == flag
        rate = reader.info.sample_rate
        kept = KEPT.search(flag)
        assert kept and float(kept.group(1)) == pytest.approx(len(audio) / rate, abs=0.006)
        assert tracks[case.name]["seconds"] == pytest.approx(len(audio) / rate, abs=0.01)
        _, whole = decode(root / "corpus" / case.original)
        assert len(audio) < len(whole), case.name
        if case.lossless:  # what is kept is the source's beginning, sample for sample
            source = sources[case.source][:len(audio)] / 32768.0
            np.testing.assert_array_equal(audio, source.astype(np.float32), err_msg=case.name)
        outcomes["flagged"] += 1
    assert outcomes["flagged"] >= 60 and outcomes["rejected"] >= 40, outcomes  # both paths


def test_strict_rejects_what_was_flagged_and_keeps_the_rest(corpus, tmp_path):
    root, cases, _, manifest = corpus
    strict = ingest(str(root / "corpus"), str(tmp_path / "strict"),
                    IngestConfig(sample_rate=22050, chunk_seconds=4.0, workers=2, strict=True),
                    progress=False)
    reasons = {r["path"]: r["reason"] for r in strict["rejected"]}
    for flag in manifest["flagged"]:
        assert reasons[flag["path"]] == KEPT.sub("", flag["reason"]) + "; rejected (strict)"
    assert {t["track_id"] for t in strict["tracks"]} == {c.name for c in valid(cases)}


@pytest.mark.slow
def test_the_pipeline_agrees_with_the_cli_file_by_file(corpus):
    root, _, _, manifest = corpus
    run_executor(root / "corpus", root / "examples",
                 config=IngestConfig(sample_rate=22050, chunk_seconds=4.0))
    report = json.loads((root / "examples" / "ingest_report.json").read_text())
    assert report["rejected"] == manifest["rejected"]
    assert report["flagged"] == manifest["flagged"]
    assert sorted(report["track_splits"]) == sorted(t["track_id"] for t in manifest["tracks"])


def test_single_file_reads_keep_what_decodes_and_warn(corpus):
    root, _, sources, _ = corpus
    warnings = []
    audio = load_audio(str(root / "corpus/cut/wav/sox_16bit.middle.wav"), 44100, channels=2,
                       warn=warnings.append)
    [warning] = warnings
    assert warning.startswith(f"{root}/corpus/cut/wav/sox_16bit.middle.wav: truncated: the "
                              f"data chunk declares 2.35 s, the file holds 1.06 s; kept 1.06 s")
    np.testing.assert_array_equal(audio, sources["44k_stereo"][:len(audio)] / np.float32(32768))
    with pytest.raises(AudioError, match=r"; rejected \(strict\)$"):
        load_audio(str(root / "corpus/cut/wav/sox_16bit.middle.wav"), 44100, strict=True)


def test_damaged_bytes_inside_an_mp3_are_skipped_and_flagged(corpus, tmp_path):
    # Fed the junk, mpg123 gives up resyncing and ends the stream: a third of this file was
    # lost, unflagged. The frames on either side are decoded; the file is flagged.
    root, _, _, _ = corpus
    data = (root / "corpus/mp3/cbr128_lame_tag.mp3").read_bytes()
    junk = np.random.RandomState(0).bytes(3000)
    (tmp_path / "junk.mp3").write_bytes(data[:20000] + junk + data[20000:])
    reader, audio = decode(tmp_path / "junk.mp3")
    _, whole = decode(root / "corpus/mp3/cbr128_lame_tag.mp3")
    [flag] = reader.flags
    skipped = re.fullmatch(r"(\d+) bytes of damaged data between MPEG audio frames were skipped",
                           flag)
    assert skipped and 3000 <= int(skipped.group(1)) < 3000 + 418  # + the rest of a frame
    assert abs(len(audio) - len(whole)) <= 1152  # at most the frame the junk cut into


def test_an_mp3_with_another_stream_appended_keeps_the_first_and_says_so(corpus, tmp_path):
    root, _, _, _ = corpus
    first = (root / "corpus/mp3/cbr128_lame_tag.mp3").read_bytes()
    second = (root / "corpus/mp3/mpeg2_22k_mono.mp3").read_bytes()
    (tmp_path / "two.mp3").write_bytes(first + second)
    reader, audio = decode(tmp_path / "two.mp3")
    _, whole = decode(root / "corpus/mp3/cbr128_lame_tag.mp3")
    assert len(audio) == len(whole)
    assert reader.flags == ["the MPEG audio changes sample rate or layer after 2.35 s; the rest "
                            "was skipped"]
