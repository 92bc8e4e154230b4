"""Band-limited resampling against numpy references, streaming equal to one-shot."""

import numpy as np
import pytest

from conftest import tone
from jukebox_tf.audio.decode import AudioError
from jukebox_tf.audio.resample import StreamResampler, check_rate, output_length, resample


def amplitude_at(x, rate, freq):
    """Amplitude of a sinusoid at `freq` (Hann-windowed DFT projection, numpy reference)."""
    x = x[len(x) // 4: 3 * len(x) // 4]
    w = np.hanning(len(x))
    t = np.arange(len(x)) / rate
    return 2 * abs(np.sum(w * x * np.exp(-2j * np.pi * freq * t))) / np.sum(w)


@pytest.mark.parametrize("src,dst", [(44100, 22050), (48000, 22050), (32000, 44100),
                                     (22050, 44100), (8000, 22050)])
def test_passband_kept_and_length_exact(src, dst):
    x = tone(1.0, src, freq=1000.0, amp=0.5)
    y = resample(x, src, dst)
    assert len(y) == output_length(len(x), src, dst)
    assert abs(amplitude_at(y, dst, 1000.0) - 0.5) < 0.005


def test_content_above_new_nyquist_is_removed():
    # A 15 kHz tone cannot exist at 22050 Hz; a naive decimator would alias it to 7050 Hz.
    x = tone(1.0, 44100, freq=15000.0, amp=0.5)
    y = resample(x, 44100, 22050)
    assert amplitude_at(y, 22050, 22050 - 15000.0) < 0.5 * 10 ** (-80 / 20)
    naive = x[::2]
    assert amplitude_at(naive, 22050, 22050 - 15000.0) > 0.4


def test_matches_ideal_fft_resampling_of_a_periodic_signal():
    # For a signal periodic in the window, ideal band-limited resampling is exact in the DFT
    # domain (numpy reference); soxr must agree away from the edges.
    rate, n = 48000, 48000
    t = np.arange(n) / rate
    x = (0.3 * np.sin(2 * np.pi * 440 * t) + 0.2 * np.sin(2 * np.pi * 3000 * t + 1)).astype(
        np.float32)
    m = n * 22050 // rate
    spectrum = np.fft.rfft(x)
    ideal = np.fft.irfft(spectrum[: m // 2 + 1], m) * m / n
    y = resample(x, rate, 22050)
    np.testing.assert_allclose(y[2000:-2000], ideal[2000:-2000], atol=2e-3)


def test_streaming_equals_one_shot():
    x = np.random.RandomState(0).randn(100003, 2).astype(np.float32) * 0.1
    stream = StreamResampler(44100, 22050, channels=2)
    parts = [stream.process(x[i:i + 7777]) for i in range(0, len(x), 7777)] + [stream.flush()]
    np.testing.assert_array_equal(np.concatenate(parts), resample(x, 44100, 22050))


@pytest.mark.parametrize("rate", [0, 1, 1999, 768001, 3_000_000])
def test_rates_outside_the_supported_range_are_refused(rate):
    with pytest.raises(AudioError, match=f"sample rate {rate} Hz is outside the resampler's "
                                         f"supported range 2000-768000 Hz"):
        check_rate(rate)
