"""Synthesis of the demo genres: chords, bass and drums from numpy, no samples.

Every genre is one (harmony, rhythm) pair; each harmony and each rhythm is
shared by at least two genres, so neither chroma alone nor onset patterns
alone separate the classes (see :mod:`pipeline.datasets.demo` for the table).

Sound sources
-------------
- Chords and bass: wavetable oscillators (one period of a harmonic series,
  read by a fixed-point phase accumulator), with a per-preset ADSR-like envelope. All notes
  stay below C6 and harmonics are capped so nothing aliases at 22,050 Hz.
- Drums: kick (pitch-swept sine), snare (noise + tone), closed/open hi-hat
  (differenced noise), ride (noise + inharmonic partials), each shaped by a
  per-kit decay, placed on a per-rhythm grid with timing and velocity jitter.
- Mix: per-clip drum/bass/chord balance, a one-pole low-pass per artist
  (brightness), white noise at a random SNR, peak level -12..-3 dBFS.

All randomness comes from the ``numpy.random.Generator`` passed in, so a clip
is a pure function of its seed.
"""

from __future__ import annotations

import dataclasses
import functools
import math

import numpy as np

from pipeline.errors import ConfigError

#: Semitone offsets of the major and natural minor scales.
_MAJOR = (0, 2, 4, 5, 7, 9, 11)
_MINOR = (0, 2, 3, 5, 7, 8, 10)

#: Harmony classes: (scale, chord size, progressions as scale degrees 0..6).
HARMONIES: dict[str, tuple[tuple[int, ...], int, tuple[tuple[int, ...], ...]]] = {
    # The same four progression shapes in major and in natural minor, so that
    # the mode (chord qualities around the tonic), not the shape, tells them apart:
    # I-IV-V-I / i-iv-v-i, I-V-IV-I / i-v-iv-i, I-IV-I-V / i-iv-i-v, I-vi-IV-V / i-VI-iv-v.
    "major-triads": (_MAJOR, 3, ((0, 3, 4, 0), (0, 4, 3, 0), (0, 3, 0, 4), (0, 5, 3, 4))),
    "minor-triads": (_MINOR, 3, ((0, 3, 4, 0), (0, 4, 3, 0), (0, 3, 0, 4), (0, 5, 3, 4))),
    # ii7-V7-Imaj7-Imaj7, Imaj7-vi7-ii7-V7, IVmaj7-V7-iii7-vi7, ii7-V7-Imaj7-vi7.
    "seventh-chords": (_MAJOR, 4, ((1, 4, 0, 0), (0, 5, 1, 4), (3, 4, 2, 5), (1, 4, 0, 5))),
}

RHYTHMS: tuple[str, ...] = ("backbeat", "four-on-the-floor", "swing", "breakbeat", "none")


@dataclasses.dataclass(frozen=True)
class GenreSpec:
    """harmony : key of :data:`HARMONIES`; rhythm : one of :data:`RHYTHMS`; tempo : BPM range."""

    harmony: str
    rhythm: str
    tempo: tuple[float, float]


#: The demo genres. Tempo ranges overlap on purpose.
GENRES: dict[str, GenreSpec] = {
    "pop": GenreSpec("major-triads", "backbeat", (94.0, 128.0)),
    "indie": GenreSpec("minor-triads", "backbeat", (94.0, 128.0)),
    "disco": GenreSpec("seventh-chords", "four-on-the-floor", (106.0, 126.0)),
    "house": GenreSpec("minor-triads", "four-on-the-floor", (110.0, 128.0)),
    "jazz": GenreSpec("seventh-chords", "swing", (90.0, 132.0)),
    "country": GenreSpec("major-triads", "swing", (90.0, 124.0)),
    "funk": GenreSpec("seventh-chords", "breakbeat", (88.0, 114.0)),
    "hiphop": GenreSpec("minor-triads", "breakbeat", (82.0, 104.0)),
    "ambient": GenreSpec("major-triads", "none", (70.0, 104.0)),
    "lounge": GenreSpec("seventh-chords", "none", (70.0, 104.0)),
}

#: Instrument presets: harmonic amplitudes and envelope (attack s, decay s, sustain level).
_TIMBRES: tuple[tuple[tuple[float, ...], float, float, float], ...] = (
    ((1.0, 0.5, 0.3, 0.0, 0.2, 0.0, 0.1, 0.0, 0.05), 0.01, 0.5, 0.8),         # organ
    ((1.0, 0.35, 0.12, 0.06, 0.03), 0.004, 0.35, 0.25),                       # electric piano
    (tuple(1.0 / k for k in range(1, 13)), 0.02, 0.6, 0.6),                   # saw
    (tuple((1.0 / k if k % 2 else 0.0) for k in range(1, 12)), 0.02, 0.6, 0.6),  # square
    ((1.0, 0.25, 0.45, 0.1, 0.12, 0.05), 0.25, 1.5, 0.9),                    # pad
    ((1.0, 0.7, 0.45, 0.3, 0.2, 0.12, 0.08), 0.002, 0.18, 0.1),              # pluck
)
_TABLE_BITS = 14
_TABLE_SIZE = 1 << _TABLE_BITS


@dataclasses.dataclass(frozen=True)
class ArtistStyle:
    """What stays fixed across one synthetic artist's clips (the ``group``).

    timbre : index into the instrument presets; bass_timbre likewise.
    brightness_hz : cut-off of the one-pole low-pass on chords and bass.
    kit : drum kit parameters (kick start/end Hz, kick decay s, snare decay s,
        snare tone Hz, hat decay s).
    tempo_centre : preferred BPM (clips vary around it within the genre range).
    chord_beats : beats per chord (2 or 4).
    drum_level, bass_level : mix balance relative to the chords.
    """

    timbre: int
    bass_timbre: int
    brightness_hz: float
    kit: tuple[float, float, float, float, float, float]
    tempo_centre: float
    chord_beats: int
    drum_level: float
    bass_level: float


def draw_artist(spec: GenreSpec, rng: np.random.Generator) -> ArtistStyle:
    """A random artist of a genre: timbre, kit and mix drawn from pools shared by all genres."""
    lo, hi = spec.tempo
    return ArtistStyle(
        timbre=int(rng.integers(len(_TIMBRES))),
        bass_timbre=int(rng.integers(len(_TIMBRES))),
        brightness_hz=float(rng.uniform(1500.0, 7000.0)),
        kit=(float(rng.uniform(110.0, 180.0)), float(rng.uniform(42.0, 60.0)),
             float(rng.uniform(0.12, 0.35)), float(rng.uniform(0.06, 0.18)),
             float(rng.uniform(160.0, 240.0)), float(rng.uniform(0.015, 0.05))),
        tempo_centre=float(rng.uniform(lo, hi)),
        chord_beats=int(rng.choice([2, 4])),
        drum_level=float(rng.uniform(0.35, 0.9)),
        bass_level=float(rng.uniform(0.3, 0.7)),
    )


def _max_harmonic(freq: float, sr: int) -> int:
    """Highest partial of a note at ``freq`` Hz that stays below 0.45 ``sr`` (no aliasing)."""
    return max(1, int(0.45 * sr / freq))


@functools.lru_cache(maxsize=256)
def _table(harmonics: tuple[float, ...], max_harmonic: int) -> np.ndarray:
    """One period [shape=(_TABLE_SIZE,)] of the first ``max_harmonic`` partials, peak 1.

    Cached: a clip plays few distinct (preset, partial count) pairs; the
    table is read-only after it is built.
    """
    # Sum of sines through one inverse real FFT: bin k = -i * amp * N / 2 gives amp * sin(k * phase).
    spectrum = np.zeros(_TABLE_SIZE // 2 + 1, dtype=complex)
    amps = np.asarray(harmonics[:max_harmonic], dtype=float)
    spectrum[1:1 + len(amps)] = -0.5j * _TABLE_SIZE * amps
    table = np.fft.irfft(spectrum, n=_TABLE_SIZE)
    table /= np.max(np.abs(table))
    table.flags.writeable = False
    return table


def _oscillator(table: np.ndarray, freq: float, steps: np.ndarray, sr: int, phase0: int) -> np.ndarray:
    """``table`` played at ``freq`` Hz for the sample indices ``steps`` [shape=(n,)].

    A 32-bit fixed-point phase accumulator; the top 14 bits index the table
    (nearest entry: about 74 dB SNR, far below the added noise). Integer
    arithmetic keeps it fast and exactly reproducible.
    """
    increment = int(round(freq * 2.0 ** 32 / sr))
    return table[((phase0 + steps * increment) >> (32 - _TABLE_BITS)) & (_TABLE_SIZE - 1)]


def _envelope(n: int, sr: int, attack: float, decay: float, sustain: float) -> np.ndarray:
    """Attack / exponential decay to ``sustain`` / 15 ms release ramp, [shape=(n,)]."""
    t = np.arange(n) / sr
    env = np.minimum(t / attack, 1.0) * (sustain + (1.0 - sustain) * np.exp(-t / decay))
    # The release ramp keeps consecutive notes from clicking.
    ramp = min(n, int(0.015 * sr))
    env[n - ramp:] *= np.linspace(1.0, 0.0, ramp)
    return env


def _midi_hz(midi: float) -> float:
    return 440.0 * 2.0 ** ((midi - 69.0) / 12.0)


def _chord_notes(scale: tuple[int, ...], size: int, degree: int) -> list[int]:
    """Semitones above the key root of the diatonic chord on ``degree`` (stacked thirds)."""
    notes = []
    for j in range(size):
        step = degree + 2 * j
        notes.append(scale[step % 7] + 12 * (step // 7))
    return notes


def _drum_hits(kit: tuple[float, ...], sr: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """One-shot samples of the kit's kick, snare, closed hat, open hat and ride."""
    kick_hi, kick_lo, kick_decay, snare_decay, snare_tone, hat_decay = kit
    t = np.arange(int(0.5 * sr)) / sr
    freq = kick_lo + (kick_hi - kick_lo) * np.exp(-t / 0.03)
    kick = np.sin(2.0 * np.pi * np.cumsum(freq) / sr) * np.exp(-t / kick_decay)
    noise = rng.standard_normal(len(t))
    snare = (0.7 * noise * np.exp(-t / snare_decay)
             + 0.5 * np.sin(2.0 * np.pi * snare_tone * t) * np.exp(-t / 0.05))
    hiss = np.diff(rng.standard_normal(len(t) + 1))  # first difference: a cheap high-pass
    hat = 0.5 * hiss * np.exp(-t / hat_decay)
    open_hat = 0.4 * hiss * np.exp(-t / (hat_decay * 6.0))
    ride = (0.25 * hiss + 0.3 * sum(np.sin(2.0 * np.pi * f * t) for f in (3120.0, 4410.0, 5870.0))) \
        * np.exp(-t / 0.45)
    return {"kick": kick, "snare": snare, "hat": hat, "open_hat": open_hat, "ride": ride}


def _pattern(rhythm: str, rng: np.random.Generator) -> list[tuple[str, float, float]]:
    """Drum events of one 4-beat bar: (instrument, position in beats, velocity)."""
    events: list[tuple[str, float, float]] = []
    if rhythm == "backbeat":
        events += [("kick", 0.0, 1.0), ("kick", 2.0, 0.9), ("snare", 1.0, 1.0), ("snare", 3.0, 1.0)]
        if rng.random() < 0.5:
            events.append(("kick", 2.5, 0.7))
        events += [("hat", k / 2.0, 0.6 if k % 2 else 0.8) for k in range(8)]
    elif rhythm == "four-on-the-floor":
        events += [("kick", float(k), 1.0) for k in range(4)]
        events += [("snare", 1.0, 0.8), ("snare", 3.0, 0.8)]
        events += [("open_hat", k + 0.5, 0.7) for k in range(4)]
        events += [("hat", k / 4.0, 0.35) for k in range(16) if k % 2 == 0 and k % 4]
    elif rhythm == "swing":
        # Ride "ding, ding-a, ding, ding-a" on the triplet grid; hat on 2 and 4.
        events += [("ride", float(k), 0.8) for k in range(4)]
        events += [("ride", k + 2.0 / 3.0, 0.55) for k in (1, 3)]
        events += [("hat", 1.0, 0.6), ("hat", 3.0, 0.6), ("kick", 0.0, 0.45)]
        events += [("snare", k + 2.0 / 3.0, 0.3) for k in range(4) if rng.random() < 0.35]
    elif rhythm == "breakbeat":
        events += [("kick", 0.0, 1.0), ("kick", 0.5, 0.8), ("kick", 2.5, 0.9)]
        events += [("snare", 1.0, 1.0), ("snare", 3.0, 1.0), ("snare", 1.75, 0.35), ("snare", 3.25, 0.4)]
        if rng.random() < 0.5:
            events.append(("kick", 2.75, 0.7))
        events += [("hat", k / 4.0, 0.5 if k % 2 else 0.7) for k in range(16)]
    elif rhythm != "none":
        raise ConfigError(f"unknown rhythm {rhythm!r}; valid: {', '.join(RHYTHMS)}")
    return events


def _bass_beats(rhythm: str) -> list[tuple[float, float]]:
    """Bass note (onset, length) pairs in beats within one bar."""
    if rhythm == "backbeat":
        return [(k / 2.0, 0.45) for k in range(8)]
    if rhythm == "four-on-the-floor":
        return [(k + 0.5, 0.45) for k in range(4)]
    if rhythm == "swing":
        return [(float(k), 0.9) for k in range(4)]
    if rhythm == "breakbeat":
        return [(0.0, 0.7), (0.75, 0.5), (2.5, 0.45), (3.0, 0.7)]
    return [(0.0, 4.0)]


def synthesize(spec: GenreSpec, artist: ArtistStyle, rng: np.random.Generator, *,
               seconds: float, sr: int = 22050) -> np.ndarray:
    """One clip of a genre by an artist.

    Parameters
    ----------
    spec : GenreSpec
    artist : ArtistStyle
    rng : numpy.random.Generator
        Source of every clip-level draw (key, tempo, progression, voicing,
        jitter, noise, level).
    seconds : float
        Clip length in seconds.
    sr : int
        Sample rate in Hz.

    Returns
    -------
    np.ndarray [shape=(round(seconds * sr),), dtype=int16]
        Mono PCM samples.
    """
    n = int(round(seconds * sr))
    lo, hi = spec.tempo
    tempo = float(np.clip(artist.tempo_centre + rng.normal(0.0, 4.0), lo, hi))
    beat = 60.0 / tempo
    key = int(rng.integers(12))
    scale, size, progressions = HARMONIES[spec.harmony]
    progression = progressions[int(rng.integers(len(progressions)))]
    inversion = int(rng.integers(size))
    harmonics, attack, decay, sustain = _TIMBRES[artist.timbre]
    bass_harmonics = _TIMBRES[artist.bass_timbre][0]

    chords = np.zeros(n)
    bass = np.zeros(n)
    chord_len = artist.chord_beats * beat
    n_chords = int(math.ceil(seconds / chord_len))
    for c in range(n_chords):
        degree = progression[c % len(progression)]
        notes = _chord_notes(scale, size, degree)
        # Inversion: move the lowest notes up an octave, same for the whole clip.
        voiced = sorted(notes[inversion:] + [x + 12 for x in notes[:inversion]])
        # Voicing register: lowest note in E3..D#4 (MIDI 52..63), so chords of
        # every key sit in the same range and the register says nothing of the key.
        lowest = 48 + key + voiced[0]
        shift = 52 + (lowest - 52) % 12 - lowest
        start = int(round(c * chord_len * sr))
        stop = min(n, int(round((c + 1) * chord_len * sr)))
        if stop <= start:
            continue
        steps = np.arange(stop - start, dtype=np.int64)
        segment = np.zeros(stop - start)
        for semis in voiced:
            freq = _midi_hz(48 + key + semis + shift)
            segment += _oscillator(_table(harmonics, _max_harmonic(freq, sr)), freq, steps, sr,
                                   int(rng.integers(2 ** 32)))
        chords[start:stop] += segment * _envelope(stop - start, sr, attack, decay, sustain)
    n_bars = int(math.ceil(seconds / (4 * beat)))
    for b in range(n_bars):
        bar_start = b * 4 * beat
        for onset, length in _bass_beats(spec.rhythm):
            t0 = bar_start + onset * beat
            chord_index = int(t0 // chord_len)
            root = key + _chord_notes(scale, size, progression[chord_index % len(progression)])[0]
            start = int(round(t0 * sr))
            stop = min(n, start + int(round(length * beat * sr)))
            if stop <= start:
                continue
            freq = _midi_hz(28 + (root - 28) % 12)  # E1..D#2
            wave = _oscillator(_table(bass_harmonics, _max_harmonic(freq, sr)), freq,
                               np.arange(stop - start, dtype=np.int64), sr, 0)
            bass[start:stop] += wave * _envelope(stop - start, sr, 0.005, 0.4, 0.5)
    # Brightness: a one-pole low-pass whose cut-off is the artist's.
    alpha = 1.0 - math.exp(-2.0 * math.pi * artist.brightness_hz / sr)
    from scipy.signal import lfilter  # here: scipy.signal costs every `pipeline` command ~0.5 s to import

    tonal = lfilter([alpha], [1.0, alpha - 1.0], chords / max(size, 1) + artist.bass_level * bass)

    drums = np.zeros(n)
    if spec.rhythm != "none":
        hits = _drum_hits(artist.kit, sr, rng)
        for b in range(n_bars):
            for name, pos, vel in _pattern(spec.rhythm, rng):
                t0 = (b * 4 + pos) * beat + rng.normal(0.0, 0.004)
                start = max(0, int(round(t0 * sr)))
                if start >= n:
                    continue
                hit = hits[name]
                stop = min(n, start + len(hit))
                drums[start:stop] += vel * (1.0 + rng.normal(0.0, 0.08)) * hit[:stop - start]

    drum_gain = artist.drum_level * float(rng.uniform(0.8, 1.25))
    mix = tonal / (np.max(np.abs(tonal)) + 1e-9) + drum_gain * drums / (np.max(np.abs(drums)) + 1e-9)
    snr_db = float(rng.uniform(18.0, 40.0))
    signal_rms = float(np.sqrt(np.mean(mix ** 2)))
    mix = mix + rng.standard_normal(n) * signal_rms * 10.0 ** (-snr_db / 20.0)
    peak_db = float(rng.uniform(-12.0, -3.0))
    mix *= 10.0 ** (peak_db / 20.0) / (np.max(np.abs(mix)) + 1e-12)
    # Quantise here (not in the file writer) so the bytes depend only on numpy.
    return np.round(mix * 32767.0).astype(np.int16)
