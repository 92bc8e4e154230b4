"""The metadata sidecar (CSV or JSONL: path, artist, genre, lyrics) and the label vocabularies.

A broken row never stops the ingest: it is reported with its row number and reason, and its
file is ingested as `unknown`. Rows are decoded as UTF-8 one field at a time, so a single
mis-encoded lyric rejects only its own row.
"""

from __future__ import annotations

import csv
import dataclasses
import functools
import io
import json
import os
import re
from typing import Iterable, Sequence

from jukebox_tf import storage
from jukebox_tf.audio.schema import GENRE_SEPARATORS, UNKNOWN, TrackLabels

REQUIRED_COLUMNS = ("path",)
OPTIONAL_COLUMNS = ("artist", "genre", "lyrics")
DEFAULT_NAMES = ("metadata.csv", "metadata.jsonl")


@dataclasses.dataclass(frozen=True)
class MetadataRow:
    path: str  # normalised, relative to the input folder, '/'-separated
    artist: str
    genre: str
    lyrics: str
    row: int  # 1-based data row (CSV) or line (JSONL) number, for error messages


@dataclasses.dataclass
class Metadata:
    source: str | None = None
    rows: dict[str, MetadataRow] = dataclasses.field(default_factory=dict)
    problems: list[dict] = dataclasses.field(default_factory=list)  # {"path", "reason"}
    warnings: list[str] = dataclasses.field(default_factory=list)

    def _problem(self, reason: str) -> None:
        self.problems.append({"path": self.source, "reason": reason})


def find_metadata(input_dir: str) -> str | None:
    for name in DEFAULT_NAMES:
        candidate = os.path.join(input_dir, name)
        if storage.isfile(candidate):
            return candidate
    return None


def normalise_path(path: str, input_dir: str) -> str:
    """Metadata paths may be relative to the input folder or absolute inside it."""
    if os.path.isabs(path):
        path = os.path.relpath(path, input_dir)
    return os.path.normpath(path).replace(os.sep, "/")


def _bad_bytes(value: str) -> str | None:
    """The first undecodable byte of a surrogateescape-decoded string, as '0xNN'."""
    for ch in value:
        if "\udc80" <= ch <= "\udcff":
            return f"0x{ord(ch) - 0xDC00:02X}"
    return None


def _csv_rows(text: str, meta: Metadata) -> Iterable[tuple[int, dict]]:
    reader = csv.DictReader(io.StringIO(text, newline=""))
    columns = [c.strip().lower() for c in (reader.fieldnames or [])]
    missing = [c for c in REQUIRED_COLUMNS if c not in columns]
    if missing:
        meta._problem(f"missing required column {', '.join(repr(c) for c in missing)} "
                      f"(columns found: {', '.join(columns) or 'none'}); "
                      f"all files are ingested as '{UNKNOWN}'")
        return
    reader.fieldnames = columns
    for number, raw in enumerate(reader, start=1):
        if None in raw:
            meta._problem(f"row {number}: {len(raw[None])} more field(s) than the header has")
            continue
        yield number, raw


def _jsonl_rows(data: bytes, meta: Metadata) -> Iterable[tuple[int, dict]]:
    for number, line in enumerate(data.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line.decode("utf-8"))
        except UnicodeDecodeError as e:
            meta._problem(f"line {number}: not valid UTF-8 (byte 0x{line[e.start]:02X})")
            continue
        except json.JSONDecodeError as e:
            meta._problem(f"line {number}: not valid JSON ({e.msg})")
            continue
        if not isinstance(obj, dict):
            meta._problem(f"line {number}: expected a JSON object, got {type(obj).__name__}")
            continue
        obj = {str(k).strip().lower(): v for k, v in obj.items()}
        if "path" not in obj:
            meta._problem(f"line {number}: missing required field 'path'")
            continue
        yield number, {k: "" if v is None else v for k, v in obj.items()}


def read_metadata(path: str, input_dir: str) -> Metadata:
    """Parses a CSV (header row) or JSONL (one object per line) sidecar."""
    meta = Metadata(source=path)
    try:
        with storage.open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        meta._problem(f"cannot read metadata file: {e.strerror}")
        return meta
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    if path.lower().endswith((".jsonl", ".json", ".ndjson")):
        rows = list(_jsonl_rows(data, meta))
        label = "line"
    else:
        rows = list(_csv_rows(data.decode("utf-8", errors="surrogateescape"), meta))
        label = "row"
    present = set().union(*(r.keys() for _, r in rows)) if rows else set()
    for column in OPTIONAL_COLUMNS:
        if rows and column not in present:
            meta.warnings.append(f"{path}: no '{column}' column; every track gets "
                                 f"{'no lyrics' if column == 'lyrics' else repr(UNKNOWN)}")
    for number, raw in rows:
        fields = {}
        for column in REQUIRED_COLUMNS + OPTIONAL_COLUMNS:
            value = raw.get(column) or ""
            if not isinstance(value, str):
                value = ", ".join(map(str, value)) if isinstance(value, list) else str(value)
            bad = _bad_bytes(value)
            if bad:
                meta._problem(f"{label} {number}: field '{column}' is not valid UTF-8 "
                              f"(byte {bad}); fix the file's encoding")
                break
            fields[column] = value
        else:
            if not fields["path"].strip():
                meta._problem(f"{label} {number}: empty 'path'")
                continue
            rel = normalise_path(fields["path"].strip(), input_dir)
            if rel in meta.rows:
                meta.warnings.append(f"{path}: {label} {number} repeats the path {rel!r} of "
                                     f"{label} {meta.rows[rel].row}; the first is kept")
                continue
            meta.rows[rel] = MetadataRow(rel, fields["artist"].strip(), fields["genre"].strip(),
                                         fields["lyrics"], number)
    return meta


def genre_words(text: str) -> tuple[str, ...]:
    """'Synth-Pop; ambient' -> ('synth-pop', 'ambient'); empty -> ('unknown',)."""
    words = tuple(w for w in re.split(GENRE_SEPARATORS, text.strip().lower()) if w)
    return words or (UNKNOWN,)


@dataclasses.dataclass(frozen=True)
class Vocabularies:
    """Artist names and genre words; list index = id, id 0 = `unknown`."""
    artists: tuple[str, ...]
    genres: tuple[str, ...]

    @staticmethod
    def _vocab(names: Iterable[str]) -> tuple[str, ...]:
        return (UNKNOWN,) + tuple(sorted({n for n in names if n and n != UNKNOWN}))

    @classmethod
    def build(cls, rows: Iterable[MetadataRow]) -> "Vocabularies":
        rows = list(rows)
        return cls(artists=cls._vocab(r.artist for r in rows),
                   genres=cls._vocab(w for r in rows for w in genre_words(r.genre)))

    @functools.cached_property
    def _artist_ids(self) -> dict[str, int]:
        return {name: i for i, name in enumerate(self.artists)}

    @functools.cached_property
    def _genre_ids(self) -> dict[str, int]:
        return {word: i for i, word in enumerate(self.genres)}

    def lookup(self, artist: str | None = None, genres: Sequence[str] = (),
               lyrics: str = "") -> TrackLabels:
        """Labels for names; names not in the vocabulary keep their text but map to id 0."""
        artist = artist or UNKNOWN
        words = genre_words(" ".join(genres))
        return TrackLabels(artist=artist, artist_id=self._artist_ids.get(artist, 0),
                           genre=words, genre_ids=tuple(self._genre_ids.get(g, 0) for g in words),
                           lyrics=lyrics)

    def labels(self, row: MetadataRow | None) -> TrackLabels:
        if row is None:
            return TrackLabels()
        return self.lookup(row.artist, [row.genre], row.lyrics)
