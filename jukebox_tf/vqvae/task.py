"""Training the VQ-VAE with the shared loop (`jukebox_tf.training`): the VQ-VAE's `Task`.

Batches are windows of `config.sample_length` samples, randomly cropped from the ingested
chunks (silent chunks skipped). The losses' normalisers (data variance, mean spectral norm)
are computed once from the training data before the first step and saved with the weights.
"""

from __future__ import annotations

import dataclasses
from typing import Sequence

import tensorflow as tf

from jukebox_tf import storage
from jukebox_tf.audio.dataset import load_manifest, make_dataset
from jukebox_tf.codes.hierarchy import CodeHierarchy
from jukebox_tf.errors import JukeboxError
from jukebox_tf.training.warm_start import starting_checkpoint, warm_start
from jukebox_tf.vqvae import losses
from jukebox_tf.vqvae.config import VQVAEConfig
from jukebox_tf.vqvae.vqvae import build_vqvae

STATISTICS_SECONDS = 600  # as the original: 10 minutes of windows for the normalisers


def compute_data_statistics(data_dir: str, config: VQVAEConfig,
                            seconds: float = STATISTICS_SECONDS, seed: int = 0) -> dict:
    windows = max(1, int(seconds * config.sample_rate // config.sample_length))
    ds = make_dataset(data_dir, batch_size=min(8, windows), sample_length=config.sample_length,
                      seed=seed, skip_silent=True)
    batches = (b["audio"].numpy() for b in ds.take(-(-windows // min(8, windows))))
    return losses.data_statistics(batches)


def check_dataset(data_dir: str, config: VQVAEConfig) -> dict:
    manifest = load_manifest(data_dir)
    CodeHierarchy.of(config).check_audio_rate(manifest["sample_rate"], data_dir)
    if manifest["channels"] != config.channels:
        raise JukeboxError(f"{data_dir}: {manifest['channels']} channel(s), the VQ-VAE expects "
                           f"{config.channels}")
    return manifest


FREEZABLE = ("encoder", "decoder", "codebook")


class VQVAETask:
    """init_from: a VQ-VAE run directory to start from (its weights, not its optimizer; the
    loss normalisers are the new data's). freeze: parts training leaves unchanged (FREEZABLE:
    every level's encoders, decoders, or codebooks; frozen codebooks get no EMA update or
    restart, so with the encoders frozen too the codes stay those of the starting model)."""

    name = "vqvae"

    def __init__(self, config: VQVAEConfig, data_dir: str | None, global_batch_size: int,
                 data_stats: dict | None = None, init_from: str | None = None,
                 freeze: Sequence[str] = ()):
        self.config, self.data_dir, self.global_batch_size = config, data_dir, global_batch_size
        if data_dir is not None:
            check_dataset(data_dir, config)
            # Before training starts, so that task.json (written first) records them.
            data_stats = data_stats or compute_data_statistics(data_dir, config)
        self.data_stats = data_stats or None
        unknown = [name for name in freeze if name not in FREEZABLE]
        if unknown:
            raise JukeboxError(f"--freeze {' '.join(unknown)}: not a part of a VQ-VAE; choose "
                               f"from {', '.join(FREEZABLE)}")
        self.init_from, self.freeze = init_from, tuple(freeze)

    @classmethod
    def from_run(cls, run_dir: str, data_dir: str, global_batch_size: int,
                 freeze: Sequence[str] = (), sample_length: int | None = None) -> "VQVAETask":
        """A task that fine-tunes the VQ-VAE of `run_dir` on the dataset `data_dir`."""
        from jukebox_tf.training.run_dir import read_task_json

        saved = read_task_json(run_dir, "vqvae", "VQ-VAE", "train-vqvae")
        starting_checkpoint(run_dir)
        config = VQVAEConfig.from_dict(saved["vqvae"])
        if sample_length:
            config = dataclasses.replace(config, sample_length=sample_length)
        return cls(config, data_dir, global_batch_size, init_from=storage.abspath(run_dir),
                   freeze=freeze)

    def build(self):
        model = build_vqvae(self.config)
        if self.data_stats is not None:
            model.set_data_statistics(self.data_stats)
        for bottleneck in model.bottlenecks:
            bottleneck.frozen = "codebook" in self.freeze
        return model

    def warm_start(self, model) -> None:
        if self.init_from is not None:
            warm_start(model, self.init_from, skip=[model.data_stats])

    def frozen_variables(self, model) -> list:
        parts = [model.encoders] * ("encoder" in self.freeze) + [
            model.decoders] * ("decoder" in self.freeze)
        return [v for layers in parts for layer in layers for v in layer.trainable_variables]

    def dataset(self, input_context, seed: int):
        ds = make_dataset(self.data_dir, batch_size=self.global_batch_size,
                          sample_length=self.config.sample_length, seed=seed, skip_silent=True,
                          input_context=input_context)
        return ds.map(lambda batch: batch["audio"])

    def loss(self, model, batch, training: bool):
        out = model(batch, training=training)
        return out["loss"], out["metrics"]

    def media_summaries(self, model, batch, step: int) -> None:
        """Input and per-level reconstructions as audio, code histograms, a spectrogram."""
        from jukebox_tf.audio.spectrogram import render_spectrograms_png

        audio = batch[:2]
        out = model(audio, training=False)
        rate = self.config.sample_rate
        tf.summary.audio("audio/input", audio, rate, step=step, max_outputs=2)
        items = [("input", audio[0, :, 0].numpy())]
        for level, recon in enumerate(out["reconstructions"]):
            tf.summary.audio(f"audio/reconstruction_l{level}", tf.clip_by_value(recon, -1, 1),
                             rate, step=step, max_outputs=2)
            tf.summary.histogram(f"codes/l{level}", out["codes"][level], step=step,
                                 buckets=min(self.config.l_bins, 128))
            items.append((f"level {level} (hop {self.config.hop_lengths[level]})",
                          recon[0, :, 0].numpy()))
        image = tf.image.decode_png(render_spectrograms_png(items, rate), channels=3)
        tf.summary.image("spectrogram/reconstructions", image[None], step=step)

    def config_dict(self) -> dict:
        saved = {"vqvae": self.config.to_dict(), "data_dir": self.data_dir,
                 "global_batch_size": self.global_batch_size,
                 "data_stats": {k: float(v) for k, v in (self.data_stats or {}).items()}}
        if self.init_from is not None:
            saved["init_from"] = {"run": self.init_from}
        if self.freeze:
            saved["freeze"] = list(self.freeze)
        return saved



def load_vqvae_run(run_dir: str, use_ema: bool = True, precision: str = "float32"):
    """The trained VQ-VAE of a `train-vqvae` run directory (EMA weights by default), computing
    in `precision` ("float32" or "bfloat16"; codes and audio come out int32 / float32)."""
    from jukebox_tf.training import restore_for_eval
    from jukebox_tf.training.run_dir import read_task_json

    saved = read_task_json(run_dir, "vqvae", "VQ-VAE", "train-vqvae")
    task = VQVAETask(VQVAEConfig.from_dict(saved["vqvae"]), None, 1, saved.get("data_stats"))
    return restore_for_eval(task, run_dir, use_ema=use_ema, precision=precision)
