"""A codes dataset in memory, per track: each chunk's codes placed at the token its offset
falls on, so tracks are continuous however they were chunked (overlapping chunks overwrite the
padded tail of the one before; tokens no chunk covers are marked invalid).
"""

from __future__ import annotations

import dataclasses
import os
from typing import Sequence

import numpy as np
import tensorflow as tf

from jukebox_tf.codes.format import codes_feature_spec, load_codes_manifest
from jukebox_tf.errors import JukeboxError


@dataclasses.dataclass
class LevelCodes:
    """The codes of one level, every track's concatenated: codes int16 [N], valid bool [N]
    (a chunk covered the token), and per track its first index and length in tokens."""

    codes: np.ndarray
    valid: np.ndarray
    starts: np.ndarray
    lengths: np.ndarray


@dataclasses.dataclass
class CodesData:
    """A codes dataset in memory: per level LevelCodes, per track its labels and lyrics."""

    manifest: dict
    levels: dict[int, LevelCodes]
    track_ids: list[str]
    track_lengths: np.ndarray  # audio samples of each whole track
    artist_ids: np.ndarray
    genre_ids: list[list[int]]
    lyrics: list[str]

    @property
    def max_track_seconds(self) -> float:
        return float(self.track_lengths.max(initial=0)) / self.manifest["sample_rate"]

    @classmethod
    def load(cls, codes_dir: str, levels: Sequence[int]) -> "CodesData":
        manifest = load_codes_manifest(codes_dir)
        for level in levels:
            if not 0 <= level < manifest["levels"]:
                raise JukeboxError(f"{codes_dir}: no level {level} (the codes have "
                                   f"{manifest['levels']} levels)")
        chunks = _read_chunks(codes_dir, manifest, levels)
        if not chunks:
            raise JukeboxError(f"{codes_dir}: the codes dataset holds no chunks")
        by_track: dict[str, list[dict]] = {}
        for chunk in chunks:
            by_track.setdefault(chunk["track_id"], []).append(chunk)
        track_ids = sorted(by_track)
        tracks = [sorted(by_track[t], key=lambda c: c["offset"]) for t in track_ids]
        hops = manifest["hop_lengths"]
        return cls(
            manifest=manifest,
            levels={level: _concatenate([_track_tokens(t, level, hops[level]) for t in tracks])
                    for level in levels},
            track_ids=track_ids,
            track_lengths=np.array([max(c["track_length"] for c in t) for t in tracks],
                                   np.int64),
            artist_ids=np.array([t[0]["artist_id"] for t in tracks], np.int64),
            genre_ids=[list(t[0]["genre_ids"]) for t in tracks],
            lyrics=[t[0]["lyrics"] for t in tracks])


def _read_chunks(codes_dir: str, manifest: dict, levels: Sequence[int]) -> list[dict]:
    spec = codes_feature_spec(manifest["levels"])
    keep = {f"codes_l{level}" for level in levels} | {
        "track_id", "offset", "num_samples", "track_length", "artist_id", "genre_ids", "lyrics"}
    spec = {k: v for k, v in spec.items() if k in keep}
    files = [os.path.join(codes_dir, s["file"]) for s in manifest["shards"]]
    ds = tf.data.TFRecordDataset(files).batch(256).map(
        lambda raw: tf.io.parse_example(raw, spec))
    chunks = []
    for batch in ds:
        genres = tf.sparse.to_dense(batch["genre_ids"], default_value=-1).numpy()
        batch = {k: v.numpy() for k, v in batch.items() if k != "genre_ids"}
        for i in range(len(batch["track_id"])):
            chunk = {k: batch[k][i] for k in ("offset", "num_samples", "track_length",
                                              "artist_id")}
            chunk.update(track_id=batch["track_id"][i].decode(),
                         lyrics=batch["lyrics"][i].decode("utf-8", errors="replace"),
                         genre_ids=[int(g) for g in genres[i] if g >= 0])
            for level in levels:
                chunk[level] = np.frombuffer(batch[f"codes_l{level}"][i], "<i2")
            chunks.append(chunk)
    return chunks


def _track_tokens(chunks: list[dict], level: int, hop: int) -> tuple[np.ndarray, np.ndarray]:
    """(codes int16 [n], valid bool [n]) of one track, its chunks sorted by offset."""
    extent = max(int(c["offset"]) + int(c["num_samples"]) for c in chunks)
    n = -(-extent // hop)
    codes, valid = np.zeros(n, np.int16), np.zeros(n, bool)
    for chunk in chunks:
        start = (int(chunk["offset"]) + hop // 2) // hop  # the token its offset falls on
        part = chunk[level][:max(n - start, 0)]
        codes[start:start + len(part)] = part
        valid[start:start + len(part)] = True
    return codes, valid


def _concatenate(tracks: list[tuple[np.ndarray, np.ndarray]]) -> LevelCodes:
    lengths = np.array([len(c) for c, _ in tracks], np.int64)
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
    return LevelCodes(np.concatenate([c for c, _ in tracks]),
                      np.concatenate([v for _, v in tracks]), starts, lengths)
