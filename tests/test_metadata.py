import json

from jukebox_tf.audio.metadata import Vocabularies, genre_words, read_metadata


def test_csv_with_quoted_multiline_lyrics_and_bom(tmp_path):
    path = tmp_path / "meta.csv"
    path.write_bytes("\ufeffPath,Artist,Genre,Lyrics\n"
                     "a.wav,Alice,Rock Pop,\"la la, la\nsecond line\"\n"
                     "sub/b.flac,Bob,,\n".encode())
    meta = read_metadata(str(path), str(tmp_path))
    assert meta.problems == [] and meta.warnings == []
    assert meta.rows["a.wav"].lyrics == "la la, la\nsecond line"
    assert meta.rows["a.wav"].genre == "Rock Pop"
    assert meta.rows["sub/b.flac"].artist == "Bob"


def test_missing_required_column_rejects_the_metadata_file(tmp_path):
    path = tmp_path / "meta.csv"
    path.write_text("file,artist\na.wav,Alice\n")
    meta = read_metadata(str(path), str(tmp_path))
    assert meta.rows == {}
    assert meta.problems == [{"path": str(path), "reason":
                              "missing required column 'path' (columns found: file, artist); "
                              "all files are ingested as 'unknown'"}]


def test_missing_optional_columns_warn(tmp_path):
    path = tmp_path / "meta.csv"
    path.write_text("path,artist\na.wav,Alice\n")
    meta = read_metadata(str(path), str(tmp_path))
    assert meta.rows["a.wav"].artist == "Alice" and meta.rows["a.wav"].lyrics == ""
    assert any("no 'genre' column" in w for w in meta.warnings)
    assert any("no 'lyrics' column" in w for w in meta.warnings)


def test_bad_encoding_rejects_only_its_row(tmp_path):
    path = tmp_path / "meta.csv"
    path.write_bytes(b"path,artist,genre,lyrics\n"
                     b"a.wav,Alice,rock,fine\n"
                     b"b.wav,Beyonc\xe9,pop,latin-1 here\n"
                     b"c.wav,Carol,jazz,\n")
    meta = read_metadata(str(path), str(tmp_path))
    assert sorted(meta.rows) == ["a.wav", "c.wav"]
    assert meta.problems == [{"path": str(path), "reason":
                              "row 2: field 'artist' is not valid UTF-8 (byte 0xE9); "
                              "fix the file's encoding"}]


def test_csv_row_with_extra_fields_and_duplicates(tmp_path):
    path = tmp_path / "meta.csv"
    path.write_text("path,artist\na.wav,A,extra\nb.wav,B\nb.wav,C\n,D\n")
    meta = read_metadata(str(path), str(tmp_path))
    assert sorted(meta.rows) == ["b.wav"] and meta.rows["b.wav"].artist == "B"
    reasons = [p["reason"] for p in meta.problems]
    assert reasons == ["row 1: 1 more field(s) than the header has", "row 4: empty 'path'"]
    assert any("row 3 repeats the path 'b.wav' of row 2" in w for w in meta.warnings)


def test_jsonl_with_bad_lines(tmp_path):
    path = tmp_path / "meta.jsonl"
    path.write_bytes(b'{"path": "a.wav", "artist": "A", "genre": ["rock", "pop"]}\n'
                     b'not json\n'
                     b'[1, 2]\n'
                     b'{"artist": "no path"}\n'
                     b'{"path": "\xff.wav"}\n'
                     + json.dumps({"path": str(tmp_path / "abs.wav"), "lyrics": "x"}).encode())
    meta = read_metadata(str(path), str(tmp_path))
    assert sorted(meta.rows) == ["a.wav", "abs.wav"]
    assert meta.rows["a.wav"].genre == "rock, pop"
    assert [p["reason"].split(":")[0] for p in meta.problems] == [
        "line 2", "line 3", "line 4", "line 5"]
    assert "not valid JSON" in meta.problems[0]["reason"]
    assert "not valid UTF-8 (byte 0xFF)" in meta.problems[3]["reason"]


def test_unreadable_metadata_file(tmp_path):
    meta = read_metadata(str(tmp_path / "nope.csv"), str(tmp_path))
    assert "cannot read metadata file" in meta.problems[0]["reason"]


def test_vocabularies_have_unknown_at_zero_and_sorted_ids(tmp_path):
    path = tmp_path / "meta.csv"
    path.write_text("path,artist,genre\na.wav,Zed,Synth-Pop; ambient\nb.wav,Amy,rock\nc.wav,,\n")
    meta = read_metadata(str(path), str(tmp_path))
    vocab = Vocabularies.build(meta.rows.values())
    assert vocab.artists == ("unknown", "Amy", "Zed")
    assert vocab.genres == ("unknown", "ambient", "rock", "synth-pop")
    labels = vocab.labels(meta.rows["a.wav"])
    assert (labels.artist_id, labels.genre, labels.genre_ids) == (
        2, ("synth-pop", "ambient"), (3, 1))
    assert vocab.labels(meta.rows["c.wav"]).artist_id == 0
    assert vocab.labels(None).genre_ids == (0,)
    assert vocab.lookup("Nobody", ["rock", "polka"]).genre_ids == (2, 0)


def test_genre_words():
    assert genre_words(" Hip Hop, R&B/soul ") == ("hip", "hop", "r&b", "soul")
    assert genre_words("") == ("unknown",)
