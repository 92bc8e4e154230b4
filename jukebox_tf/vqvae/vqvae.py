"""The hierarchical VQ-VAE: per level, its own encoder, bottleneck and decoder.

    model = VQVAE(get_preset("small"))
    out = model(audio, training=True)      # audio float32 [B, T, channels], T % 128 == 0
    out["loss"]                            # scalar: recons + multispectral + commit terms
    out["reconstructions"][level]          # [B, T, channels], decoded from that level alone
    out["codes"][level]                    # int32 [B, T / hop_lengths[level]]
    out["metrics"]                         # {"spectral_convergence_db/l0": ..., ...}
    codes = model.encode(audio, levels=[2])    # -> [int32 [B, T / 128]]
    audio = model.decode(codes[0], level=2)    # -> [B, T, channels]

Each decoder reconstructs the audio from its own level's codes alone (no skip connections
between levels), so the top level is forced to carry information and cannot collapse.
"""

from __future__ import annotations

import keras
import tensorflow as tf

from jukebox_tf.layers import PACKAGE
from jukebox_tf.layers.chain import build_chain
from jukebox_tf.vqvae import losses
from jukebox_tf.vqvae.bottleneck import BottleneckBlock
from jukebox_tf.vqvae.config import VQVAEConfig
from jukebox_tf.vqvae.decoder import Decoder
from jukebox_tf.vqvae.encoder import Encoder, resnet_kwargs

STAT_NAMES = ("l2", "l1", "spec")


@keras.saving.register_keras_serializable(PACKAGE)
class VQVAE(keras.Model):

    def __init__(self, config: VQVAEConfig | dict | None = None, **kwargs):
        super().__init__(**kwargs)
        if isinstance(config, dict):
            config = VQVAEConfig.from_dict(config)
        self.config = config = config or VQVAEConfig()
        self.encoders, self.bottlenecks, self.decoders = [], [], []
        for level in range(config.levels):
            downs, strides = config.downs_t[:level + 1], config.strides_t[:level + 1]
            self.encoders.append(Encoder(config.emb_width, downs, strides,
                                         **resnet_kwargs(config, level), name=f"encoder_{level}"))
            self.bottlenecks.append(BottleneckBlock(
                config.l_bins, config.emb_width, config.l_mu, config.restart_threshold,
                seed=level, name=f"bottleneck_{level}"))
            self.decoders.append(Decoder(config.channels, config.emb_width, downs, strides,
                                         **resnet_kwargs(config, level), name=f"decoder_{level}"))

    def build(self, input_shape=None):
        # Normalisers of the losses (variance, mean |x|, mean spectral norm), set once from
        # the training data and saved with the weights.
        self.data_stats = self.add_weight(name="data_stats", shape=(len(STAT_NAMES),),
                                          initializer="ones", trainable=False,
                                          aggregation="only_first_replica", autocast=False)
        audio_shape = (None, None, self.config.channels)
        for level in range(self.config.levels):
            z_shape = build_chain([self.encoders[level]], audio_shape)
            self.bottlenecks[level].build(z_shape)
            build_chain([self.decoders[level]], z_shape)
        super().build(input_shape)

    @property
    def hop_lengths(self) -> tuple[int, ...]:
        return self.config.hop_lengths

    def set_data_statistics(self, stats: dict) -> None:
        self.data_stats.assign([float(stats[name]) for name in STAT_NAMES])

    def data_statistics(self) -> dict:
        return dict(zip(STAT_NAMES, (float(v) for v in keras.ops.convert_to_numpy(
            self.data_stats))))

    def _audio(self, audio):
        audio = tf.cast(tf.convert_to_tensor(audio), self.compute_dtype)
        return audio[..., None] if audio.shape.rank == 2 else audio

    def encode(self, audio, levels=None) -> list:
        """audio [B, T] or [B, T, C] -> int32 codes [B, T / hop] for each requested level."""
        audio = self._audio(audio)
        levels = range(self.config.levels) if levels is None else levels
        codes = []
        for level in levels:
            z = tf.cast(self.encoders[level](audio), tf.float32)
            flat = tf.reshape(z, [-1, self.config.emb_width])
            level_codes, _ = self.bottlenecks[level].quantise(flat)
            codes.append(tf.reshape(level_codes, tf.shape(z)[:2]))
        return codes

    def decode(self, codes, level: int):
        """int32 codes [B, N] of one level -> float32 audio [B, N * hop_lengths[level], C]."""
        vectors = self.bottlenecks[level].dequantise(tf.convert_to_tensor(codes, tf.int32))
        return tf.cast(self.decoders[level](tf.cast(vectors, self.compute_dtype)), tf.float32)

    def call(self, audio, training=False):
        config = self.config
        x = self._audio(audio)
        target = tf.cast(x, tf.float32)
        l2_scale, _, spec_scale = tf.unstack(tf.convert_to_tensor(self.data_stats))
        recons, specs, commits, codes, metrics = [], [], [], [], {}
        for level in range(config.levels):
            q = self.bottlenecks[level](self.encoders[level](x), training=training)
            x_out = tf.cast(self.decoders[level](tf.cast(q["quantized"], self.compute_dtype)),
                            tf.float32)
            recon = losses.lmix_loss(target, x_out, l2_scale, config.lmix_l2, config.lmix_linf,
                                     config.linf_k)
            spec = tf.reduce_mean(losses.multispectral_loss(
                target, x_out, config.multispec_n_fft, config.multispec_hop,
                config.multispec_window)) / spec_scale
            recons.append(x_out)
            codes.append(q["codes"])
            specs.append(spec)
            commits.append(q["commit_loss"])
            metrics[f"recons_loss/l{level}"] = recon
            metrics[f"spectral_loss/l{level}"] = spec
            metrics[f"commit_loss/l{level}"] = q["commit_loss"]
            metrics[f"spectral_convergence_db/l{level}"] = losses.to_db(
                tf.reduce_mean(losses.spectral_convergence(target, x_out)))
            for name, value in q["metrics"].items():
                metrics[f"{name}/l{level}"] = value
        recon_total = tf.add_n([metrics[f"recons_loss/l{l}"] for l in range(config.levels)])
        loss = (recon_total + config.multispectral * tf.add_n(specs)
                + config.commit * tf.add_n(commits))
        metrics.update(recons_loss=recon_total, spectral_loss=tf.add_n(specs),
                       commit_loss=tf.add_n(commits))
        return {"loss": loss, "reconstructions": recons, "codes": codes, "metrics": metrics}

    def get_config(self):
        return super().get_config() | {"config": self.config.to_dict()}


def build_vqvae(config: VQVAEConfig) -> VQVAE:
    """A VQVAE with all its variables created."""
    model = VQVAE(config)
    model.build((None, None, config.channels))
    return model
