"""Reading an ingested dataset back with `tf.data`.

    manifest = load_manifest(data_dir)
    ds = make_dataset(data_dir, batch_size=4, sample_length=32768)
    batch = next(iter(ds))
    batch["audio"]        # float32 [4, 32768, channels] in [-1, 1]
    batch["artist_id"]    # int32 [4]
    batch["genre_ids"]    # int32 [4, max_genres], padded with -1
    batch["offset"]       # int64 [4]: first frame of the window within its track
    batch["track_length"] # int64 [4]: frames in the whole track
    batch["lyrics"], batch["track_id"], batch["artist"]  # string [4]

Windows come from chunks: a random window of `sample_length` frames per chunk when
`random_crop` (the original's augmentation), else the chunk's start; short chunks are
zero-padded at the end.

Shards are TFRecord files, compressed as the manifest's `"compression"` says: "" (none, what
`jukebox-tf ingest` writes) or "GZIP" (what the TFX AudioExampleGen writes).
"""

from __future__ import annotations

import json
import os

from jukebox_tf import storage
from jukebox_tf.audio.ingest import MANIFEST
from jukebox_tf.audio.schema import check_version, feature_spec
from jukebox_tf.errors import JukeboxError

GENRE_PAD = -1
COMPRESSIONS = ("", "GZIP")  # TFRecordDataset compression_type values a manifest may name


def load_manifest(data_dir: str) -> dict:
    """The dataset's manifest; a clear error when the folder is not a complete dataset."""
    path = os.path.join(data_dir, MANIFEST)
    if not storage.isfile(path):
        raise JukeboxError(f"{data_dir!r} is not a complete jukebox-tf dataset: {MANIFEST} is "
                           f"missing (run `jukebox-tf ingest`, or run it again to finish)")
    try:
        with storage.open(path, encoding="utf-8") as f:
            manifest = json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise JukeboxError(f"{path}: not valid JSON ({e})") from None
    check_version(manifest.get("schema_version"), path)
    if manifest.get("compression", "") not in COMPRESSIONS:
        raise JukeboxError(f"{path}: unknown compression {manifest['compression']!r} "
                           f"(supported: {', '.join(map(repr, COMPRESSIONS))})")
    missing = [s["file"] for s in manifest["shards"]
               if not storage.isfile(os.path.join(data_dir, s["file"]))]
    if missing:
        raise JukeboxError(f"{path}: shard(s) missing: {', '.join(missing)}")
    return manifest


def shard_paths(data_dir: str, manifest: dict | None = None) -> list[str]:
    manifest = manifest or load_manifest(data_dir)
    return [os.path.join(data_dir, s["file"]) for s in manifest["shards"] if s["chunks"]]


def read_shards(files, manifest: dict):
    """A `tf.data.TFRecordDataset` of serialized chunks from shard paths (or a dataset of
    them), decompressing as the manifest says."""
    import tensorflow as tf

    return tf.data.TFRecordDataset(files, compression_type=manifest.get("compression", ""))


def parse_chunks(serialized, max_genres: int = 4):
    """Parses a batch of serialized chunk Examples into a dict of tensors.

    Returns audio as float32 [batch, max_frames, channels] (zero-padded) with `num_samples`.
    """
    import tensorflow as tf

    f = tf.io.parse_example(serialized, feature_spec())
    channels = tf.reduce_max(f["channels"])
    pcm = tf.io.decode_raw(f["audio"], tf.int16)  # [batch, max_frames * channels], 0-padded
    audio = tf.reshape(tf.cast(pcm, tf.float32) / 32768.0,
                       [tf.shape(pcm)[0], -1, tf.cast(channels, tf.int32)])
    genre_ids = tf.sparse.to_dense(f["genre_ids"], default_value=GENRE_PAD)
    genre_ids = tf.pad(genre_ids, [[0, 0], [0, max_genres]], constant_values=GENRE_PAD)
    return {
        "audio": audio,
        "num_samples": f["num_samples"],
        "sample_rate": f["sample_rate"],
        "offset": f["offset"],
        "track_length": f["track_length"],
        "track_id": f["track_id"],
        "artist": f["artist"],
        "artist_id": tf.cast(f["artist_id"], tf.int32),
        "genre_ids": tf.cast(genre_ids[:, :max_genres], tf.int32),
        "lyrics": f["lyrics"],
        "silent": f["silent"],
        "schema_version": f["schema_version"],
    }


def window_chunk(example: dict, sample_length: int, random_crop: bool, seed):
    """Cuts one [sample_length, channels] window from a parsed chunk."""
    import tensorflow as tf

    audio = example["audio"][0, :example["num_samples"][0]]
    slack = tf.maximum(tf.shape(audio, out_type=tf.int64)[0] - sample_length, 0)
    start = (tf.random.uniform([], 0, slack + 1, dtype=tf.int64, seed=seed)
             if random_crop else tf.constant(0, tf.int64))
    window = audio[start:start + sample_length]
    window = tf.pad(window, [[0, sample_length - tf.shape(window)[0]], [0, 0]])
    out = {k: v[0] for k, v in example.items() if k not in ("audio", "num_samples")}
    out["audio"] = tf.ensure_shape(window, [sample_length, None])
    out["offset"] = out["offset"] + start
    out["num_samples"] = tf.minimum(example["num_samples"][0] - start, sample_length)
    return out


def make_dataset(data_dir: str, *, batch_size: int, sample_length: int | None = None,
                 random_crop: bool = True, shuffle: bool = True, repeat: bool = True,
                 seed: int | None = None, skip_silent: bool = False, max_genres: int = 4,
                 input_context=None, shuffle_buffer: int = 256, drop_remainder: bool = True):
    """A batched, prefetched `tf.data.Dataset` of windows (see the module docstring).

    `input_context` (from `distribute_datasets_from_function`) shards the files across input
    pipelines and makes `batch_size` the global batch; `sample_length` defaults to one chunk.
    """
    import tensorflow as tf

    manifest = load_manifest(data_dir)
    sample_length = sample_length or manifest["chunk_frames"]
    files = shard_paths(data_dir, manifest)
    if not files:
        raise JukeboxError(f"{data_dir}: the dataset holds no chunks")
    ds = tf.data.Dataset.from_tensor_slices(files)
    if input_context is not None:
        batch_size = input_context.get_per_replica_batch_size(batch_size)
        if len(files) >= input_context.num_input_pipelines:
            ds = ds.shard(input_context.num_input_pipelines, input_context.input_pipeline_id)
    if shuffle:
        ds = ds.shuffle(len(files), seed=seed, reshuffle_each_iteration=True)
    ds = ds.interleave(lambda f: read_shards(f, manifest), cycle_length=min(len(files), 8),
                       num_parallel_calls=tf.data.AUTOTUNE, deterministic=not shuffle)
    if input_context is not None and len(files) < input_context.num_input_pipelines:
        ds = ds.shard(input_context.num_input_pipelines, input_context.input_pipeline_id)
    if repeat:
        ds = ds.repeat()
    if shuffle:
        ds = ds.shuffle(shuffle_buffer, seed=seed)
    ds = ds.map(lambda s: parse_chunks(tf.expand_dims(s, 0), max_genres),
                num_parallel_calls=tf.data.AUTOTUNE, deterministic=not shuffle)
    if skip_silent:
        ds = ds.filter(lambda e: tf.equal(e["silent"][0], 0))
    ds = ds.map(lambda e: window_chunk(e, sample_length, random_crop, seed),
                num_parallel_calls=tf.data.AUTOTUNE, deterministic=not shuffle)
    return ds.batch(batch_size, drop_remainder=drop_remainder).prefetch(tf.data.AUTOTUNE)
