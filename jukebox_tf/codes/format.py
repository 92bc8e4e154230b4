"""The codes dataset format: every chunk of an audio dataset as VQ-VAE codes, once.

Priors train on codes, never on audio, so the VQ-VAE runs over the data once
(`jukebox-tf encode`) instead of at every prior step. One Example per audio chunk:

| feature          | type       | meaning                                                     |
|------------------|------------|-------------------------------------------------------------|
| codes_l{L}       | bytes      | int16 little-endian codes of level L, ceil(num_samples/hop) |
| track_id         | bytes      | as in the audio dataset                                     |
| offset           | int64      | first audio sample of the chunk within the track            |
| num_samples      | int64      | audio samples in the chunk                                  |
| track_length     | int64      | audio samples in the whole track                            |
| artist, artist_id, genre, genre_ids, lyrics | as in the audio dataset (same vocabularies) |
| schema_version   | int64      | CODES_SCHEMA_VERSION                                        |

`codes.json` beside the shards holds the levels, hop lengths, codebook size, sample rate,
vocabularies and counts. Writing them: encode.py (a whole dataset) and the pipeline's CodeGen
(per batch); reading them into per-track token sequences: tracks.py.
"""

from __future__ import annotations

import datetime
import json
import os

import numpy as np
import tensorflow as tf

from jukebox_tf import storage
from jukebox_tf.audio import records
from jukebox_tf.errors import JukeboxError

CODES_SCHEMA_VERSION = 1
MANIFEST = "codes.json"
SHARD_PATTERN = "codes-{index:05d}-of-{count:05d}.tfrecord"


def code_examples(batch: dict, codes, hops) -> list[tuple[str, bytes, list[int]]]:
    """(track_id, serialized codes Example, tokens per level) for each chunk of a batch of
    windows (`make_dataset` items, `audio` [B, T, C]) and its codes per level ([B, T/hop])."""
    codes = [np.asarray(c) for c in codes]
    out = []
    for i in range(len(batch["track_id"])):
        n = int(batch["num_samples"][i])
        track = _text(batch["track_id"][i])
        feats = {"track_id": track, "offset": int(batch["offset"][i]),
                 "num_samples": n, "track_length": int(batch["track_length"][i]),
                 "artist": _bytes(batch["artist"][i]),
                 "artist_id": int(batch["artist_id"][i]),
                 "genre_ids": np.asarray([g for g in np.asarray(batch["genre_ids"][i])
                                          if g >= 0], np.int64),
                 "lyrics": _bytes(batch["lyrics"][i]),
                 "schema_version": CODES_SCHEMA_VERSION}
        level_tokens = []
        for level, hop in enumerate(hops):
            level_codes = codes[level][i, :-(-n // hop)]
            feats[f"codes_l{level}"] = level_codes.astype("<i2").tobytes()
            level_tokens.append(len(level_codes))
        out.append((track, records.encode_example(feats), level_tokens))
    return out


def _bytes(value) -> bytes:
    return value.numpy() if hasattr(value, "numpy") else bytes(value)


def _text(value) -> str:
    return _bytes(value).decode()


def codes_manifest(config, dataset_manifest: dict, shards: list[dict], tokens: list[int], *,
                   source_dataset: str, source_run: str | None) -> dict:
    """codes.json's content; shards: [{"file", "chunks"}]."""
    return {
        "schema_version": CODES_SCHEMA_VERSION,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "source_dataset": storage.abspath(source_dataset),
        "vqvae_run": source_run and storage.abspath(source_run),
        "sample_rate": config.sample_rate,
        "levels": config.levels,
        "hop_lengths": list(config.hop_lengths),
        "l_bins": config.l_bins,
        "chunks": sum(s["chunks"] for s in shards),
        "tokens": list(tokens),
        "artists": dataset_manifest["artists"],
        "genres": dataset_manifest["genres"],
        "shards": shards,
    }


def write_codes_manifest(out_dir: str, manifest: dict) -> None:
    """Written last: a codes folder with codes.json is complete."""
    with records.AtomicWriter(os.path.join(out_dir, MANIFEST), "w") as f:
        json.dump(manifest, f, indent=2)


def load_codes_manifest(codes_dir: str) -> dict:
    path = os.path.join(codes_dir, MANIFEST)
    if not storage.isfile(path):
        raise JukeboxError(f"{codes_dir!r} is not a complete codes dataset: {MANIFEST} is "
                           f"missing (run `jukebox-tf encode`)")
    with storage.open(path) as f:
        manifest = json.load(f)
    if manifest.get("schema_version") != CODES_SCHEMA_VERSION:
        raise JukeboxError(f"{path}: codes schema version {manifest.get('schema_version')}, "
                           f"this jukebox-tf reads {CODES_SCHEMA_VERSION}; re-run encode")
    return manifest


def codes_feature_spec(levels: int) -> dict:
    scalar = lambda dtype: tf.io.FixedLenFeature([], dtype)  # noqa: E731
    spec = {f"codes_l{level}": scalar(tf.string) for level in range(levels)}
    spec.update(track_id=scalar(tf.string), offset=scalar(tf.int64),
                num_samples=scalar(tf.int64), track_length=scalar(tf.int64),
                artist=scalar(tf.string), artist_id=scalar(tf.int64),
                genre_ids=tf.io.VarLenFeature(tf.int64), lyrics=scalar(tf.string),
                schema_version=scalar(tf.int64))
    return spec


def read_codes(codes_dir: str) -> list[dict]:
    """Every record as numpy (for tests and small tools; priors use tf.data)."""
    manifest = load_codes_manifest(codes_dir)
    out = []
    for shard in manifest["shards"]:
        for raw in records.read_records(os.path.join(codes_dir, shard["file"])):
            f = tf.io.parse_single_example(raw, codes_feature_spec(manifest["levels"]))
            item = {k: (tf.sparse.to_dense(v) if isinstance(v, tf.SparseTensor) else v).numpy()
                    for k, v in f.items()}
            for level in range(manifest["levels"]):
                item[f"codes_l{level}"] = np.frombuffer(item[f"codes_l{level}"], "<i2").astype(
                    np.int32)
            out.append(item)
    return out
