"""Synthesize a small, labelled demo music corpus (real audio files plus metadata.csv).

Everything is derived from one integer seed, so the corpus can stand in for real data in
demos and tests without shipping any audio.
"""

from __future__ import annotations

import csv
import functools
import io
import os
import pathlib
import re
import secrets
from dataclasses import dataclass

import numpy as np
import soundfile as sf
from scipy import signal

__all__ = ["ArtistStyle", "demo_styles", "make_demo_data", "METADATA_NAME"]

METADATA_NAME = "metadata.csv"
CSV_FIELDS = ("path", "artist", "genre", "lyrics")
PEAK = 0.8

SCALES: dict[str, tuple[int, ...]] = {
    "major": (0, 2, 4, 5, 7, 9, 11),
    "minor": (0, 2, 3, 5, 7, 8, 10),
    "dorian": (0, 2, 3, 5, 7, 9, 10),
    "lydian": (0, 2, 4, 6, 7, 9, 11),
    "major pentatonic": (0, 2, 4, 7, 9),
    "minor pentatonic": (0, 3, 5, 7, 10),
}


@dataclass(frozen=True)
class ArtistStyle:
    """One synthetic artist: what goes in the metadata plus the knobs that shape its sound."""

    name: str
    genre: str
    tempo_bpm: float
    scale: str
    timbre: str
    drums: bool
    has_lyrics: bool

    @property
    def slug(self) -> str:
        return re.sub(r"[^a-z0-9]+", "_", self.name.lower()).strip("_")


# Archetypes ordered so that any prefix is already varied: the first four cover slow/fast,
# dark/bright, drums/no drums and lyrics/no lyrics.
_ARCHETYPES = (
    ArtistStyle("The Sine Waves", "ambient", 70.0, "lydian", "pad", False, False),
    ArtistStyle("Chip Tunesmith", "chiptune", 150.0, "major pentatonic", "square", True, False),
    ArtistStyle("Willow Harper", "folk", 96.0, "major", "pluck", False, True),
    ArtistStyle("Neon Arcade", "synth pop", 118.0, "minor", "saw", True, True),
    ArtistStyle("Kickbox Unit", "drum machine", 128.0, "minor pentatonic", "saw", True, False),
    ArtistStyle("Dorian Grey Quartet", "jazz organ", 84.0, "dorian", "organ", True, True),
)

_ROMAN = ("", " II", " III", " IV", " V", " VI", " VII", " VIII", " IX", " X")


@dataclass(frozen=True)
class _Feel:
    """How a timbre is played; kept out of ArtistStyle because it follows from the timbre."""

    steps_per_beat: int  # melody grid
    note_prob: float
    comp: str  # "sustain" | "strum" | "arp"
    attack: float
    decay: float
    sustain: float
    release: float
    humanize: float  # seconds of timing jitter; machines get none


_FEELS = {
    "pad": _Feel(1, 0.55, "sustain", 0.25, 0.8, 0.7, 0.8, 0.0),
    "square": _Feel(4, 0.7, "arp", 0.002, 0.08, 0.6, 0.01, 0.0),
    "pluck": _Feel(2, 0.65, "strum", 0.0, 0.0, 1.0, 0.05, 0.012),
    "saw": _Feel(2, 0.7, "sustain", 0.01, 0.15, 0.6, 0.08, 0.0),
    "organ": _Feel(2, 0.6, "sustain", 0.005, 0.3, 0.9, 0.04, 0.006),
}

_PROGRESSIONS = ((0, 4, 5, 3), (0, 5, 3, 4), (0, 3, 4, 0), (5, 3, 0, 4), (0, 3, 0, 4), (1, 4, 0, 0))

_WORDS = (
    "light", "night", "river", "stone", "heart", "road", "rain", "fire", "home", "sky",
    "morning", "shadow", "silver", "dream", "wind", "song", "ocean", "city", "gold", "time",
)
_FILLERS = ("oh", "and", "the", "my", "we", "you", "I", "in", "to", "never", "always", "come")


def demo_styles(num_artists: int, rng: np.random.Generator) -> list[ArtistStyle]:
    """The first `num_artists` archetypes (cycled with numbered names), tempo jittered by rng."""
    if num_artists < 1:
        raise ValueError(f"num_artists must be >= 1, got {num_artists}")
    styles = []
    for i in range(num_artists):
        base = _ARCHETYPES[i % len(_ARCHETYPES)]
        cycle = i // len(_ARCHETYPES)
        suffix = _ROMAN[cycle] if cycle < len(_ROMAN) else f" {cycle + 1}"
        tempo = float(round(base.tempo_bpm * rng.uniform(0.95, 1.05)))
        styles.append(
            ArtistStyle(
                base.name + suffix, base.genre, tempo, base.scale, base.timbre,
                base.drums, base.has_lyrics,
            )
        )
    return styles


# ----------------------------------------------------------------------------- synthesis

_TABLE = 4096  # power of two so that wrapping the phase is a bit mask


@functools.lru_cache(maxsize=512)
def _wavetable(timbre: str, n_harm: int) -> np.ndarray:
    # Per-note harmonic count keeps high notes below Nyquist; irfft makes a table cheap.
    k = np.arange(1, n_harm + 1, dtype=np.float64)
    if timbre == "pad":
        amps = np.array([1.0, 0.25, 0.08, 0.03])[: n_harm]
        k = k[: len(amps)]
    elif timbre == "square":
        amps = np.where(k % 2 == 1, 1.0 / k, 0.0)
    elif timbre == "saw":
        amps = (1.0 / k) * np.exp(-k / 25.0)
    elif timbre == "organ":
        draw = np.zeros(n_harm)
        for h, a in ((1, 1.0), (2, 0.6), (3, 0.45), (4, 0.3), (6, 0.2), (8, 0.25)):
            if h <= n_harm:
                draw[h - 1] = a
        amps = draw
    else:
        raise ValueError(f"no wavetable for timbre {timbre!r}")
    spec = np.zeros(_TABLE // 2 + 1, dtype=np.complex128)
    spec[k.astype(int)] = -1j * amps  # sine phase so every table starts at zero
    table = np.fft.irfft(spec, n=_TABLE)
    return table / np.abs(table).max()


def _osc(timbre: str, freq: float, n: int, sr: int, phase0: float = 0.0) -> np.ndarray:
    n_harm = int(max(1, min(_TABLE // 8, 0.45 * sr // freq)))
    table = _wavetable(timbre, n_harm)
    # Truncating lookup into a large table is ~70 dB clean, which is plenty for demo audio
    # and about three times cheaper than interpolating.
    idx = (phase0 * _TABLE + np.arange(n) * (freq * _TABLE / sr)).astype(np.int64)
    return table[idx & (_TABLE - 1)]


def _karplus(freq: float, n: int, sr: int, rng: np.random.Generator, tau: float) -> np.ndarray:
    period = max(2, int(round(sr / freq - 0.5)))  # averaging filter adds half a sample of delay
    gain = np.exp(-period / (sr * tau))
    # z[0] is a zero so that the y[n - period - 1] tap needs no special case.
    z = np.zeros(n + period + 1)
    # A lowpassed burst is a soft finger pluck; raw white noise sounds like a hiss attack.
    burst = signal.lfilter([0.3], [1.0, -0.7], rng.uniform(-1.0, 1.0, period))
    z[1 : period + 1] = burst - burst.mean()
    for i in range(period, n, period):
        j = min(i + period, n)
        z[1 + i : 1 + j] = 0.5 * gain * (z[1 + i - period : 1 + j - period]
                                         + z[i - period : j - period])
    out = z[1 : n + 1]
    peak = np.abs(out).max()
    return out / peak if peak > 0 else out


def _envelope(n: int, gate: int, sr: int, feel: _Feel) -> np.ndarray:
    t = np.arange(n) / sr
    a = max(feel.attack, 1e-4)
    if feel.decay > 0:
        body = feel.sustain + (1.0 - feel.sustain) * np.exp(-np.maximum(t - a, 0.0) / feel.decay)
    else:
        body = np.ones(n)
    env = np.where(t < a, t / a, body)
    if feel.release > 0:
        gate_t = gate / sr
        env *= np.clip(1.0 - (t - gate_t) / feel.release, 0.0, 1.0)
    return env


def _render_note(buf, onset, gate, midi, vel, timbre, feel, sr, rng):
    freq = 440.0 * 2.0 ** ((midi - 69) / 12.0)
    n = min(gate + int(feel.release * sr) + 1, len(buf) - onset)
    if n <= 0:
        return
    gate = min(gate, n)
    if timbre == "pluck":
        # A plucked string rings past the written note; cap it so loops stay short.
        n = min(len(buf) - onset, int(min(gate / sr + 0.6, 1.5) * sr))
        tone = _karplus(freq, n, sr, rng, tau=0.45)
        env = np.clip(1.0 - (np.arange(n) - (n - int(0.02 * sr))) / (0.02 * sr), 0.0, 1.0)
    else:
        tone = _osc(timbre, freq, n, sr, rng.uniform())
        if timbre == "pad":
            # A slightly detuned second voice gives the slow chorus that makes pads sound soft.
            tone = 0.6 * tone + 0.4 * _osc(timbre, freq * 1.004, n, sr, rng.uniform())
        elif timbre == "saw":
            tone = 0.7 * tone + 0.3 * _osc(timbre, freq * 0.995, n, sr, rng.uniform())
        env = _envelope(n, gate, sr, feel)
    buf[onset : onset + n] += vel * tone * env


def _drum_kit(sr: int, rng: np.random.Generator, chip: bool) -> dict[str, np.ndarray]:
    def noise(n):
        x = rng.uniform(-1.0, 1.0, n)
        if chip:
            # Sample-and-hold noise is what a console noise channel sounds like.
            x = np.repeat(x[: n // 4 + 1], 4)[:n]
        return x

    t = np.arange(int(0.35 * sr)) / sr
    sweep = 48.0 + 110.0 * np.exp(-t / 0.035)
    kick = np.sin(2 * np.pi * np.cumsum(sweep) / sr) * np.exp(-t / 0.11)
    kick[: int(0.002 * sr)] += 0.3 * noise(int(0.002 * sr))

    t = np.arange(int(0.22 * sr)) / sr
    b, a = signal.butter(2, [1000.0 / (sr / 2), min(8000.0 / (sr / 2), 0.95)], btype="band")
    snare = 0.8 * signal.lfilter(b, a, noise(len(t))) * np.exp(-t / 0.055)
    snare += 0.5 * np.sin(2 * np.pi * 185.0 * t) * np.exp(-t / 0.035)

    t = np.arange(int(0.07 * sr)) / sr
    b, a = signal.butter(2, min(7000.0 / (sr / 2), 0.95), btype="high")
    hat = signal.lfilter(b, a, noise(len(t))) * np.exp(-t / 0.014)
    return {k: v / np.abs(v).max() for k, v in (("kick", kick), ("snare", snare), ("hat", hat))}


def _add_hit(buf, onset, hit, gain):
    n = min(len(hit), len(buf) - onset)
    if n > 0 and onset >= 0:
        buf[onset : onset + n] += gain * hit[:n]


def _degree_to_midi(root: int, scale: tuple[int, ...], degree: int) -> int:
    octave, idx = divmod(degree, len(scale))
    return root + 12 * octave + scale[idx]


def _pan(x: np.ndarray, pan: float) -> np.ndarray:
    theta = (pan + 1.0) * np.pi / 4.0  # equal-power, so panning does not change loudness
    return np.stack([np.cos(theta) * x, np.sin(theta) * x], axis=1)


def _synth_track(style: ArtistStyle, rng: np.random.Generator, seconds: float, sr: int,
                 stereo: bool) -> np.ndarray:
    feel = _FEELS[style.timbre]
    scale = SCALES[style.scale]
    deg_per_oct = len(scale)
    n = max(1, int(round(seconds * sr)))
    beat = 60.0 / style.tempo_bpm
    n_beats = int(np.ceil(seconds / beat)) + 1
    bars = n_beats // 4 + 1
    root = 36 + int(rng.integers(0, 12))  # bass register; other parts sit octaves above
    prog = _PROGRESSIONS[int(rng.integers(len(_PROGRESSIONS)))]

    def at(beat_pos: float) -> int:
        jitter = rng.normal(0.0, feel.humanize) if feel.humanize else 0.0
        return max(0, int(round((beat_pos * beat + jitter) * sr)))

    def chord_root(bar: int) -> int:
        return prog[bar % len(prog)]

    melody, comp, bass = np.zeros(n), np.zeros(n), np.zeros(n)

    # Melody: a two-bar motif in chord-relative degrees, repeated over the progression with
    # small mutations, so tracks have recognisable phrases rather than noise.
    steps = 8 * feel.steps_per_beat
    motif = []
    deg = int(rng.integers(0, deg_per_oct))
    for s in range(steps):
        if rng.uniform() < feel.note_prob:
            deg = int(np.clip(deg + rng.choice([-2, -1, -1, 0, 1, 1, 2]), -2, deg_per_oct + 2))
            length = int(rng.integers(1, 4 if feel.steps_per_beat > 1 else 3))
            motif.append((s, length, deg))
    for phrase in range((bars + 1) // 2):
        for s, length, d in motif:
            if rng.uniform() < 0.15:
                d += int(rng.choice([-1, 1]))
            pos = phrase * 8 + s / feel.steps_per_beat
            bar = int(pos // 4)
            midi = _degree_to_midi(root + 24, scale, chord_root(bar) + d)
            onset = at(pos)
            if onset >= n:
                continue
            gate = int(length / feel.steps_per_beat * beat * sr)
            _render_note(melody, onset, gate, midi, rng.uniform(0.7, 1.0), style.timbre, feel, sr,
                         rng)

    # Accompaniment: stacked scale thirds on the bar's chord degree.
    for bar in range(bars):
        if bar * 4 * beat >= seconds:
            break
        tones = [_degree_to_midi(root + 12, scale, chord_root(bar) + 2 * i) for i in range(3)]
        if feel.comp == "sustain":
            for m in tones:
                _render_note(comp, at(bar * 4), int(4 * beat * sr), m, 0.5, style.timbre, feel, sr,
                             rng)
        elif feel.comp == "strum":
            for b in range(4):
                for i, m in enumerate(tones if b % 2 == 0 else tones[::-1]):
                    _render_note(comp, at(bar * 4 + b + 0.03 * i), int(beat * sr), m, 0.45,
                                 style.timbre, feel, sr, rng)
        else:  # arp
            for s in range(16):
                m = tones[[0, 1, 2, 1][s % 4]]
                _render_note(comp, at(bar * 4 + s / 4), int(beat / 4 * sr), m, 0.4,
                             style.timbre, feel, sr, rng)

    if style.drums:
        bass_timbre = "square" if style.timbre == "square" else "saw"
        bass_feel = _Feel(1, 1.0, "", 0.005, 0.12, 0.5, 0.03, 0.0)
        per_beat = 2 if style.genre in ("chiptune", "drum machine") else 1
        for b in range(n_beats * per_beat):
            pos = b / per_beat
            # Eighth-note bass bounces between octaves, the usual chiptune/techno figure.
            octave = 12 if per_beat == 2 and b % 2 else 0
            midi = _degree_to_midi(root, scale, chord_root(int(pos // 4))) + octave
            _render_note(bass, at(pos), int(beat / per_beat * 0.8 * sr), midi, 0.8,
                         bass_timbre, bass_feel, sr, rng)

    drums = np.zeros(n)
    if style.drums:
        kit = _drum_kit(sr, rng, chip=style.timbre == "square")
        four_floor = style.genre == "drum machine"
        for b in range(n_beats):
            if four_floor or b % 2 == 0:
                _add_hit(drums, at(b), kit["kick"], 1.0)
            if b % 2 == 1:
                _add_hit(drums, at(b), kit["snare"], 0.6)
            for h in range(2):
                _add_hit(drums, at(b + h / 2), kit["hat"], rng.uniform(0.18, 0.3) * (1.0 - 0.4 * h))
            if four_floor and rng.uniform() < 0.3:
                _add_hit(drums, at(b + 0.75), kit["kick"], 0.5)

    levels = {"melody": 0.55, "comp": 0.3, "bass": 0.45, "drums": 0.6}
    layers = {"melody": melody, "comp": comp, "bass": bass, "drums": drums}
    if stereo:
        side = rng.choice([-1.0, 1.0])
        pans = {"melody": side * rng.uniform(0.3, 0.6), "comp": -side * rng.uniform(0.2, 0.5),
                "bass": 0.0, "drums": rng.uniform(-0.1, 0.1)}
        mix = sum(_pan(levels[k] * v, pans[k]) for k, v in layers.items())
    else:
        mix = sum(levels[k] * v for k, v in layers.items())

    fade_in = max(1, int(min(0.05, seconds / 10) * sr))
    fade_out = max(1, int(min(0.5, seconds / 4) * sr))
    ramp = np.ones(n)
    ramp[:fade_in] = 0.5 - 0.5 * np.cos(np.linspace(0.0, np.pi, fade_in))
    ramp[n - fade_out :] *= 0.5 + 0.5 * np.cos(np.linspace(0.0, np.pi, fade_out))
    mix = mix * (ramp[:, None] if mix.ndim == 2 else ramp)
    peak = np.abs(mix).max()
    if peak > 0:
        mix *= PEAK / peak
    return mix.astype(np.float32)


def _lyrics(rng: np.random.Generator) -> str:
    lines = []
    for _ in range(int(rng.integers(2, 5))):
        words = []
        for w in range(int(rng.integers(4, 8))):
            pool = _WORDS if rng.uniform() < 0.55 else _FILLERS
            words.append(str(pool[int(rng.integers(len(pool)))]))
            if w and rng.uniform() < 0.12:
                words[-1] += ","
        line = " ".join(words).rstrip(",")
        lines.append(line[0].upper() + line[1:])
    return "\n".join(lines)


# ----------------------------------------------------------------------------- files

_FORMATS = {
    "wav": ("WAV", "PCM_16"),
    "flac": ("FLAC", "PCM_16"),
    "ogg": ("OGG", "VORBIS"),
    "mp3": ("MP3", "MPEG_LAYER_III"),
}


# MPEG audio only defines these rates; any other sample_rate cannot be encoded as MP3.
_MP3_RATES = frozenset({8000, 11025, 12000, 16000, 22050, 24000, 32000, 44100, 48000})


@functools.lru_cache(maxsize=1)
def _can_write_mp3() -> bool:
    if "MP3" not in sf.available_formats():
        return False
    try:
        sf.write(io.BytesIO(), np.zeros(2048, np.float32), 44100, format="MP3",
                 subtype="MPEG_LAYER_III")
    except Exception:  # older libsndfile builds list MP3 but cannot encode it
        return False
    return True


def _atomic_target(final: pathlib.Path) -> str:
    # Not mkstemp: its 0600 mode would survive os.replace; a random hidden name is enough.
    return str(final.parent / f".{final.name}.{os.getpid()}.{secrets.token_hex(4)}.part")


def _write_audio(final: pathlib.Path, audio: np.ndarray, sr: int, ext: str) -> None:
    fmt, subtype = _FORMATS[ext]
    tmp = _atomic_target(final)
    try:
        sf.write(tmp, audio, sr, format=fmt, subtype=subtype)
        os.replace(tmp, final)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _write_csv(final: pathlib.Path, rows: list[dict[str, str]]) -> None:
    tmp = _atomic_target(final)
    try:
        with open(tmp, "x", encoding="utf-8", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=CSV_FIELDS)
            writer.writeheader()
            writer.writerows(rows)
        os.replace(tmp, final)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def make_demo_data(
    out_dir,
    seed: int = 0,
    num_artists: int = 4,
    tracks_per_artist: int = 3,
    track_seconds: float = 20.0,
    sample_rate: int = 44100,
) -> pathlib.Path:
    """Write the demo corpus under `out_dir` and return the path of its metadata CSV.

    Files are `artist_slug/track_NN.<ext>` in a rotation of WAV/FLAC/OGG(/MP3 when libsndfile
    can encode it); some tracks use another sample rate and some are stereo, so that decoders,
    resampling and downmixing all get exercised. The CSV is written last.
    """
    if not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed!r}")
    if tracks_per_artist < 1:
        raise ValueError(f"tracks_per_artist must be >= 1, got {tracks_per_artist}")
    if not track_seconds > 0:
        raise ValueError(f"track_seconds must be > 0, got {track_seconds}")
    if sample_rate < 8000:
        raise ValueError(f"sample_rate must be >= 8000, got {sample_rate}")
    seed = int(seed)
    out = pathlib.Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)

    styles = demo_styles(num_artists, np.random.default_rng(seed))
    exts = ["wav", "flac", "ogg"] + (["mp3"] if _can_write_mp3() else [])
    alt_rates = [r for r in (48000, 32000) if r != sample_rate]
    total = num_artists * tracks_per_artist
    # Rotations with coprime periods (formats 3-4, rates 5, stereo 3) keep format, rate,
    # channel count and artist from being confounded; the min() guarantees a tiny corpus still
    # has one odd-rate and one stereo file.
    alt_slot = min(1, total - 1)
    stereo_slot = min(2, total - 1)

    rows = []
    for a, style in enumerate(styles):
        (out / style.slug).mkdir(exist_ok=True)
        for t in range(tracks_per_artist):
            k = a * tracks_per_artist + t
            # Per-track streams keyed by position: adding artists never changes earlier tracks.
            rng = np.random.default_rng([seed, a, t])
            sr = alt_rates[(k // 5) % len(alt_rates)] if k % 5 == alt_slot else sample_rate
            ext = exts[k % len(exts)]
            if ext == "mp3" and sr not in _MP3_RATES:
                ext = "flac"
            stereo = k % 3 == stereo_slot
            audio = _synth_track(style, rng, track_seconds, sr, stereo)
            rel = f"{style.slug}/track_{t + 1:02d}.{ext}"
            _write_audio(out / rel, audio, sr, ext)
            lyrics = _lyrics(rng) if style.has_lyrics else ""
            rows.append({"path": rel, "artist": style.name, "genre": style.genre, "lyrics": lyrics})

    csv_path = out / METADATA_NAME
    _write_csv(csv_path, rows)
    return csv_path
