"""Evaluating a trained VQ-VAE on a dataset: spectral convergence of each level's round trip.

    metrics = evaluate_vqvae(model, "dataset/eval", max_chunks=64)
    metrics["spectral_convergence_db/l0"]  # 20 log10 of the mean over chunks, per level
    metrics["spectral_convergence/l0"]     # the mean |S - S_hat|_F / |S|_F itself
    metrics["chunks"]                      # chunks evaluated (silent ones are skipped)

Every chunk is read from its start (no random crop), padded to whole top-level codes, encoded
at every level and decoded from each level on its own, as `jukebox-tf reconstruct` does for a
file; the number is `losses.spectral_convergence` (the original's definition), with the
reconstruction zeroed past the chunk's end so the padding compares silence with silence.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from jukebox_tf.audio.dataset import load_manifest, make_dataset
from jukebox_tf.errors import JukeboxError
from jukebox_tf.vqvae import losses
from jukebox_tf.codes.encode import encode_length


def metric_key(name: str, level: int) -> str:
    return f"{name}/l{level}"


def evaluate_vqvae(model, data_dir: str, max_chunks: int | None = None,
                   batch_size: int = 8) -> dict:
    """{"spectral_convergence_db/l<L>", "spectral_convergence/l<L>" per level, "chunks"} of
    `model` (a VQVAE) over the non-silent chunks of the dataset folder `data_dir` (the first
    `max_chunks` of them, in file order, when given)."""
    config = model.config
    length = encode_length(config, load_manifest(data_dir), data_dir)  # as encode_dataset
    ds = make_dataset(data_dir, batch_size=batch_size, sample_length=length, random_crop=False,
                      shuffle=False, repeat=False, drop_remainder=False)

    @tf.function(reduce_retracing=True)
    def round_trips(audio, num_samples):
        """[B, T, C] -> spectral convergence per level and example [levels, B]."""
        codes = model.encode(audio)
        inside = tf.sequence_mask(num_samples, tf.shape(audio)[1], tf.float32)[..., None]
        return tf.stack([losses.spectral_convergence(
            audio, model.decode(codes[level], level) * inside) for level in range(config.levels)])

    per_chunk, count = [], 0
    for batch in ds:
        keep = ~batch["silent"].numpy().astype(bool)
        if max_chunks is not None:
            keep &= np.cumsum(keep) + count <= max_chunks
        if keep.any():
            sc = round_trips(batch["audio"], batch["num_samples"]).numpy()
            per_chunk.append(sc[:, keep])
            count += int(keep.sum())
        if max_chunks is not None and count >= max_chunks:
            break
    if not count:
        raise JukeboxError(f"{data_dir}: no non-silent chunk to evaluate the VQ-VAE on")
    mean = np.concatenate(per_chunk, axis=1).mean(axis=1)
    out = {"chunks": count}
    for level in range(config.levels):
        out[metric_key("spectral_convergence", level)] = float(mean[level])
        out[metric_key("spectral_convergence_db", level)] = float(losses.to_db(mean[level]))
    return out
