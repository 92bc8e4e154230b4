import numpy as np

from conftest import tone
from jukebox_tf.audio.spectrogram import log_spectrogram, save_spectrograms_png


def test_full_scale_sine_peaks_at_its_bin_at_0_db():
    rate, n_fft = 16000, 1024
    freq = 40 * rate / n_fft  # exactly on bin 40
    spec = log_spectrogram(tone(1.0, rate, freq, amp=1.0), n_fft=n_fft, hop=256)
    assert spec.shape == (1 + (16000 - 1024) // 256, 513)
    assert (spec.argmax(axis=1) == 40).all()
    np.testing.assert_allclose(spec[:, 40], 0.0, atol=0.05)
    half = log_spectrogram(tone(1.0, rate, freq, amp=0.5), n_fft=n_fft)
    np.testing.assert_allclose(half[:, 40], 20 * np.log10(0.5), atol=0.05)
    assert spec[:, 200].max() < -60  # far from the tone: only window leakage


def test_png_is_written(tmp_path):
    path = save_spectrograms_png(str(tmp_path / "s.png"), [("a", tone(1.0, 8000)),
                                                          ("b", np.zeros(100))], 8000)
    data = open(path, "rb").read()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000
