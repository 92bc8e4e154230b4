"""Round-tripping a file through one level of a trained VQ-VAE, with the numbers and the
picture a person checks: spectral convergence (dB) and before/after spectrograms."""

from __future__ import annotations

import os

import numpy as np

from jukebox_tf.audio.decode import AudioError
from jukebox_tf.audio.load import load_audio, write_wav
from jukebox_tf.audio.spectrogram import save_spectrograms_png
from jukebox_tf.errors import JukeboxError
from jukebox_tf.vqvae import losses


def reconstruct_file(model, path: str, level: int, out_wav: str,
                     max_seconds: float | None = None) -> dict:
    """Encodes `path` at `level`, decodes it, writes out_wav and out_wav's .png.

    Returns {"spectral_convergence", "spectral_convergence_db", "seconds", "codes" (count),
    "codes_used" (distinct codes), "wav", "png"}.
    """
    config = model.config
    if not 0 <= level < config.levels:
        raise JukeboxError(f"--level {level}: the VQ-VAE has levels 0-{config.levels - 1}")
    try:
        audio = load_audio(path, config.sample_rate, config.channels, max_seconds)
    except AudioError as e:
        raise JukeboxError(f"{path}: {e}") from None
    top = config.hop_lengths[-1]
    padded = np.pad(audio, [(0, -len(audio) % top), (0, 0)])
    codes = model.encode(padded[None], levels=[level])[0]
    recon = model.decode(codes, level).numpy()[0, :len(audio)]
    sc = float(losses.spectral_convergence(audio[None, :, 0], recon[None, :, 0])[0])
    write_wav(out_wav, recon, config.sample_rate)
    png = os.path.splitext(out_wav)[0] + ".png"
    save_spectrograms_png(png, [
        (f"input: {os.path.basename(path)}", audio[:, 0]),
        (f"reconstruction from level {level} ({codes.shape[1]} codes, hop "
         f"{config.hop_lengths[level]})", recon[:, 0])], config.sample_rate)
    return {"spectral_convergence": sc, "spectral_convergence_db": 20 * np.log10(max(sc, 1e-10)),
            "seconds": len(audio) / config.sample_rate, "codes": int(codes.shape[1]),
            "codes_used": int(len(np.unique(codes.numpy()))),
            "wav": out_wav, "png": png}
