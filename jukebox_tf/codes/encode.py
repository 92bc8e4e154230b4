"""`jukebox-tf encode`: every chunk of an audio dataset through a VQ-VAE into a codes dataset
(format.py). The model is any object with the VQ-VAE's `encode(audio)` and `config`.
"""

from __future__ import annotations

import contextlib
import os

import tensorflow as tf

from jukebox_tf import storage
from jukebox_tf.audio import records
from jukebox_tf.audio.dataset import load_manifest, make_dataset
from jukebox_tf.codes.format import (MANIFEST, SHARD_PATTERN, code_examples, codes_manifest,
                                     write_codes_manifest)
from jukebox_tf.codes.hierarchy import CodeHierarchy


def encode_dataset(model, data_dir: str, out_dir: str, batch_size: int = 8,
                   num_shards: int | None = None, progress: bool = True,
                   source_run: str | None = None) -> dict:
    """Encodes every chunk of `data_dir` at every level; returns the written manifest."""
    from tqdm import tqdm

    manifest = load_manifest(data_dir)
    chunk = encode_length(model.config, manifest, data_dir)
    ds = make_dataset(data_dir, batch_size=batch_size, sample_length=chunk, random_crop=False,
                      shuffle=False, repeat=False, drop_remainder=False)
    encode = tf.function(lambda audio: model.encode(audio))
    num_shards = num_shards or max(1, len(manifest["shards"]))
    storage.makedirs(out_dir)
    if storage.exists(os.path.join(out_dir, MANIFEST)):
        storage.remove(os.path.join(out_dir, MANIFEST))  # incomplete until rewritten below
    names = [SHARD_PATTERN.format(index=i, count=num_shards) for i in range(num_shards)]
    counts = [0] * num_shards
    tokens = [0] * model.config.levels
    # Every shard commits (renames) only if the whole pass succeeds.
    with contextlib.ExitStack() as stack:
        files = [stack.enter_context(records.AtomicWriter(os.path.join(out_dir, n)))
                 for n in names]
        with tqdm(total=manifest["counts"]["chunks"], unit="chunk", desc="encode",
                  disable=not progress) as bar:
            for batch in ds:
                for track, record, level_tokens in code_examples(
                        batch, encode(batch["audio"]), model.config.hop_lengths):
                    shard = _shard_of(track, num_shards)
                    files[shard].write(records.frame_record(record))
                    counts[shard] += 1
                    tokens = [a + b for a, b in zip(tokens, level_tokens)]
                bar.update(len(batch["track_id"]))
    result = codes_manifest(model.config, manifest, [{"file": n, "chunks": c}
                                                     for n, c in zip(names, counts)],
                            tokens, source_dataset=data_dir, source_run=source_run)
    write_codes_manifest(out_dir, result)
    return result


def encode_length(config, manifest: dict, data_dir: str) -> int:
    """Samples each chunk is encoded at: the chunk rounded up to whole top-level codes."""
    CodeHierarchy.of(config).check_audio_rate(manifest["sample_rate"], data_dir)
    top = config.hop_lengths[-1]
    return -(-manifest["chunk_frames"] // top) * top


def chunk_windows(serialized, length: int) -> dict:
    """A batch of serialized audio chunk Examples windowed exactly as `make_dataset(
    random_crop=False, sample_length=length)` does: `audio` [B, length, C] from each chunk's
    start, zero-padded."""
    from jukebox_tf.audio.dataset import parse_chunks, window_chunk

    ds = tf.data.Dataset.from_tensor_slices(tf.constant(serialized)).map(
        lambda s: window_chunk(parse_chunks(tf.expand_dims(s, 0)), length, False, None))
    return next(iter(ds.batch(len(serialized))))


def _shard_of(track_id: str, num_shards: int) -> int:
    import zlib

    return zlib.crc32(track_id.encode()) % num_shards  # whole tracks per shard, stable
