"""The audio dataset's record schema: the one place that defines what a chunk Example holds.

Every chunk of every track is one `tf.train.Example`. Bump `SCHEMA_VERSION` whenever a feature
is added, removed or changes meaning; readers refuse datasets with another version.

| feature       | type          | meaning                                                        |
|---------------|---------------|----------------------------------------------------------------|
| audio         | bytes         | int16 little-endian PCM, interleaved [num_samples, channels]   |
| num_samples   | int64         | frames in this chunk (the last chunk of a track may be short)  |
| channels      | int64         | 1 (mono mix) or 2                                              |
| sample_rate   | int64         | Hz, after resampling                                           |
| track_id      | bytes         | the source file's path relative to the input folder            |
| offset        | int64         | first frame of this chunk within the track                     |
| track_length  | int64         | frames in the whole track                                      |
| artist        | bytes         | artist name, "unknown" when absent                             |
| artist_id     | int64         | index into the dataset's artist vocabulary (0 = unknown)       |
| genre         | bytes list    | genre words (at least one; ["unknown"] when absent)            |
| genre_ids     | int64 list    | indices into the genre vocabulary (0 = unknown)                |
| lyrics        | bytes         | the track's full lyrics, UTF-8, "" when none                   |
| silent        | int64         | 1 when the chunk's peak is below SILENCE_PEAK (-80 dBFS)      |
| schema_version| int64         | SCHEMA_VERSION                                                 |
"""

from __future__ import annotations

import dataclasses

import numpy as np

from jukebox_tf.audio import records

SCHEMA_VERSION = 1
UNKNOWN = "unknown"
GENRE_SEPARATORS = r"[\s,;/|]+"  # genre text is split into words at runs of these
SILENCE_PEAK = 1e-4  # -80 dBFS: below 16-bit dither, nothing audible


@dataclasses.dataclass(frozen=True)
class TrackLabels:
    """What the metadata says about one track, with vocabulary ids already resolved."""
    artist: str = UNKNOWN
    artist_id: int = 0
    genre: tuple[str, ...] = (UNKNOWN,)
    genre_ids: tuple[int, ...] = (0,)
    lyrics: str = ""


def to_pcm16(audio: np.ndarray) -> bytes:
    """float [-1, 1] [frames, channels] -> interleaved little-endian int16 bytes."""
    # x32768 then clip to int16, as libsndfile and tf.audio.decode_wav do, so 16-bit sources
    # round-trip bit-exactly.
    return np.clip(np.rint(audio * 32768.0), -32768, 32767).astype("<i2").tobytes()


def from_pcm16(data: bytes, channels: int) -> np.ndarray:
    """Inverse of `to_pcm16`: float32 [frames, channels]."""
    return (np.frombuffer(data, dtype="<i2").astype(np.float32) / 32768.0).reshape(-1, channels)


def encode_chunk(audio: np.ndarray, *, sample_rate: int, track_id: str, offset: int,
                 track_length: int, labels: TrackLabels) -> bytes:
    """Serializes one chunk. audio: float32 [frames, channels] in [-1, 1]."""
    if audio.ndim != 2:
        raise ValueError(f"audio must be [frames, channels], got shape {audio.shape}")
    return records.encode_example({
        "audio": to_pcm16(audio),
        "num_samples": audio.shape[0],
        "channels": audio.shape[1],
        "sample_rate": int(sample_rate),
        "track_id": track_id,
        "offset": int(offset),
        "track_length": int(track_length),
        "artist": labels.artist,
        "artist_id": int(labels.artist_id),
        "genre": list(labels.genre),
        "genre_ids": np.asarray(labels.genre_ids, dtype=np.int64),
        "lyrics": labels.lyrics,
        "silent": int(np.max(np.abs(audio), initial=0.0) < SILENCE_PEAK),
        "schema_version": SCHEMA_VERSION,
    })


def feature_docs() -> dict[str, str]:
    """Feature name -> "type: meaning", from the table in this module's docstring (the one
    description of the schema; the pipeline's SchemaGen copies it into the schema)."""
    docs = {}
    for line in (__doc__ or "").splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 3 and cells[0] not in ("feature", "") and not set(cells[0]) <= {"-"}:
            docs[cells[0]] = f"{cells[1]}: {cells[2]}"
    return docs


def feature_spec():
    """The `tf.io.parse_example` spec for this schema."""
    import tensorflow as tf

    scalar = lambda dtype: tf.io.FixedLenFeature([], dtype)  # noqa: E731
    return {
        "audio": scalar(tf.string),
        "num_samples": scalar(tf.int64),
        "channels": scalar(tf.int64),
        "sample_rate": scalar(tf.int64),
        "track_id": scalar(tf.string),
        "offset": scalar(tf.int64),
        "track_length": scalar(tf.int64),
        "artist": scalar(tf.string),
        "artist_id": scalar(tf.int64),
        "genre": tf.io.VarLenFeature(tf.string),
        "genre_ids": tf.io.VarLenFeature(tf.int64),
        "lyrics": scalar(tf.string),
        "silent": scalar(tf.int64),
        "schema_version": scalar(tf.int64),
    }


def check_version(version: int, where: str) -> None:
    if version != SCHEMA_VERSION:
        raise ValueError(f"{where}: schema version {version}, this jukebox-tf reads version "
                         f"{SCHEMA_VERSION}; re-run `jukebox-tf ingest` on the source audio")
