"""The procedural tones world: sound events whose ground truth is known by construction.

Every event is synthesised from its parameters (class, fundamental frequency, duration, seed), so
its label, onset and offset are exact; backgrounds are stationary noises. 16 kHz mono, float32.

Event classes (each with a pitch band: the band its fundamental or centre frequency lies in):
- ``beep``: a pure sine.
- ``chirp_up`` / ``chirp_down``: a sine sweeping one octave up / down (exponential sweep).
- ``click_train``: short clicks at 8-20 per second, each a decaying burst ringing at the frequency.
- ``noise_burst``: noise band-passed around the frequency (a third of an octave either side).
- ``harmonic_stack``: the fundamental and its harmonics 2-6 with 1/k amplitudes.
- ``am_tone``: a sine whose amplitude is modulated at 6-12 Hz, depth 0.9.

Every event has a 10 ms raised-cosine attack and release, so its energy starts at its onset and
ends at its offset. Events are normalised to an RMS of -20 dBFS; backgrounds too.

Backgrounds: ``pink`` (1/f), ``brown`` (1/f^2), ``hum`` (mains hum: 50 Hz and harmonics over faint
noise), ``babble`` (several "voices": noise through moving formant filters, syllable-rate
amplitude modulation).

Planted skew (the known answer of the audio bias audit)
------------------------------------------------------
The *training* data of the embedded generator is not pitch-neutral: ``PLANTED_SKEW`` makes beeps
high-pitched with probability 0.6 (the other bands share the rest), while every other class draws
its pitch band uniformly. Trained with the pitch condition dropped for some events, the generator
reproduces that prior when a beep's pitch is left unspecified; an audit of "pitch given class"
must find beeps skewed to high and nothing for the other classes.
"""

from __future__ import annotations

import numpy as np
from scipy import signal

SAMPLE_RATE = 16_000
CLASSES: tuple[str, ...] = ("beep", "chirp_up", "chirp_down", "click_train", "noise_burst",
                            "harmonic_stack", "am_tone")
"""Event classes; category id = index + 1 (0 is silence/background in frame maps)."""

PITCH_BANDS: dict[str, tuple[float, float]] = {"low": (220.0, 440.0), "mid": (660.0, 1320.0),
                                               "high": (1760.0, 3520.0)}
"""Range (Hz) of an event's fundamental / centre frequency per pitch band; one octave each, an
octave and a half apart, so a sweep of one octave stays inside its band's neighbourhood."""

PITCHES: tuple[str, ...] = tuple(PITCH_BANDS)
BACKGROUNDS: tuple[str, ...] = ("pink", "brown", "hum", "babble")
BACKGROUND_PHRASES = {"pink": "pink noise", "brown": "brown noise", "hum": "mains hum",
                      "babble": "babble"}
CLASS_PHRASES = {"beep": "beep", "chirp_up": "rising chirp", "chirp_down": "falling chirp",
                 "click_train": "click train", "noise_burst": "noise burst",
                 "harmonic_stack": "harmonic tone", "am_tone": "warbling tone"}
DURATION_RANGE = (0.2, 2.0)
"""Shortest and longest event, seconds."""

PLANTED_SKEW: dict[str, dict[str, float]] = {"beep": {"high": 0.6}}
"""Pitch skew of the embedded generator's training data: P(pitch band | class) for listed pairs;
the rest of the probability is spread uniformly over the other bands."""

RMS_DBFS = -20.0
_RAMP_SECONDS = 0.01


def db_to_gain(db: float) -> float:
    return float(10.0 ** (db / 20.0))


def rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(x, dtype=np.float64)))) if x.size else 0.0


def _normalised(x: np.ndarray, dbfs: float = RMS_DBFS) -> np.ndarray:
    level = rms(x)
    return (x * (db_to_gain(dbfs) / level) if level > 0 else x).astype(np.float32)


def ramps(n: int, sample_rate: int) -> np.ndarray:
    """(n,) envelope: raised-cosine attack and release of 10 ms (shorter for very short events)."""
    r = min(int(round(_RAMP_SECONDS * sample_rate)), n // 2)
    env = np.ones(n)
    if r > 0:
        ramp = 0.5 - 0.5 * np.cos(np.pi * (np.arange(r) + 0.5) / r)
        env[:r], env[n - r:] = ramp, ramp[::-1]
    return env


def sample_pitch(label: str, pitches: tuple[str, ...] | list[str],
                 bias: dict[str, dict[str, float]], rng: np.random.Generator) -> str:
    """Draw a pitch band: from ``bias[label]`` where given, the rest of the mass uniformly."""
    given = bias.get(label, {})
    probs = np.array([given.get(p, np.nan) for p in pitches], dtype=np.float64)
    unlisted = np.isnan(probs)
    if unlisted.any():
        probs[unlisted] = max(1.0 - np.nansum(probs), 0.0) / unlisted.sum()
    return str(pitches[rng.choice(len(pitches), p=probs / probs.sum())])


def sample_frequency(pitch: str, rng: np.random.Generator) -> float:
    """A fundamental inside the band, log-uniform."""
    lo, hi = PITCH_BANDS[pitch]
    return float(np.exp(rng.uniform(np.log(lo), np.log(hi))))


def pitch_of(frequency: float) -> str:
    """The band a frequency lies in (the nearest band for one between bands)."""
    centres = {p: np.sqrt(lo * hi) for p, (lo, hi) in PITCH_BANDS.items()}
    return min(centres, key=lambda p: abs(np.log(frequency / centres[p])))


def render_event(label: str, frequency: float, duration: float, seed: int,
                 sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """One event clip: float32 (round(duration * sample_rate),), RMS -20 dBFS, with 10 ms ramps.

    Deterministic in its arguments; ``seed`` draws the noise of noise bursts, the click times and
    the modulation rate.
    """
    if label not in CLASSES:
        raise ValueError(f"unknown event class {label!r}; allowed: {list(CLASSES)}")
    n = int(round(duration * sample_rate))
    t = np.arange(n) / sample_rate
    rng = np.random.default_rng(seed)
    if label == "beep":
        x = np.sin(2 * np.pi * frequency * t)
    elif label in ("chirp_up", "chirp_down"):
        f0, f1 = (frequency / np.sqrt(2), frequency * np.sqrt(2))
        if label == "chirp_down":
            f0, f1 = f1, f0
        x = signal.chirp(t, f0=f0, t1=max(duration, 1e-3), f1=f1, method="logarithmic")
    elif label == "click_train":
        x = _click_train(n, frequency, rng, sample_rate)
    elif label == "noise_burst":
        band = (frequency * 2 ** (-1 / 3), min(frequency * 2 ** (1 / 3), 0.45 * sample_rate))
        sos = signal.butter(4, band, btype="bandpass", fs=sample_rate, output="sos")
        x = signal.sosfilt(sos, rng.standard_normal(n + 2048))[2048:]
    elif label == "harmonic_stack":
        x = sum(np.sin(2 * np.pi * k * frequency * t) / k for k in range(1, 7)
                if k * frequency < 0.45 * sample_rate)
    else:  # am_tone
        rate = rng.uniform(6.0, 12.0)
        x = np.sin(2 * np.pi * frequency * t) * (1 - 0.9 * 0.5 * (1 + np.cos(2 * np.pi * rate * t)))
    return _normalised(x * ramps(n, sample_rate))


def _click_train(n: int, frequency: float, rng: np.random.Generator, sample_rate: int) -> np.ndarray:
    """Clicks at a steady rate of 8-20 per second, each 8 ms of a decaying sine at ``frequency``."""
    rate = rng.uniform(8.0, 20.0)
    length = int(0.008 * sample_rate)
    tt = np.arange(length) / sample_rate
    click = np.sin(2 * np.pi * frequency * tt) * np.exp(-tt / 0.002)
    x = np.zeros(n + length)
    for start in np.arange(rng.uniform(0, 1 / rate), n / sample_rate, 1 / rate):
        i = int(start * sample_rate)
        x[i:i + length] += click
    return x[:n]


def render_background(kind: str, duration: float, seed: int,
                      sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """A background of ``duration`` seconds: float32 (round(duration * sample_rate),), RMS -20 dBFS."""
    n = int(round(duration * sample_rate))
    rng = np.random.default_rng(seed)
    if kind in ("pink", "brown"):
        spectrum = np.fft.rfft(rng.standard_normal(n))
        f = np.fft.rfftfreq(n, 1 / sample_rate)
        shape = 1 / np.maximum(f, 20.0) ** (0.5 if kind == "pink" else 1.0)
        x = np.fft.irfft(spectrum * shape, n)
    elif kind == "hum":
        t = np.arange(n) / sample_rate
        mains = rng.choice([50.0, 60.0])
        x = sum(np.sin(2 * np.pi * k * mains * t + rng.uniform(0, 2 * np.pi)) / k ** 1.5
                for k in range(1, 8))
        x = x + 0.05 * rng.standard_normal(n)
    elif kind == "babble":
        x = sum(_voice(n, rng, sample_rate) for _ in range(int(rng.integers(4, 8))))
    else:
        raise ValueError(f"unknown background {kind!r}; allowed: {list(BACKGROUNDS)}")
    return _normalised(x)


def _voice(n: int, rng: np.random.Generator, sample_rate: int) -> np.ndarray:
    """Babble-like noise: a noise source through two formant band-passes, syllable-rate AM."""
    source = rng.standard_normal(n)
    out = np.zeros(n)
    for lo, hi in ((300.0, 900.0), (1000.0, 2500.0)):
        centre = rng.uniform(lo, hi)
        sos = signal.butter(2, (centre * 0.8, centre * 1.25), btype="bandpass", fs=sample_rate,
                            output="sos")
        out += signal.sosfilt(sos, source)
    t = np.arange(n) / sample_rate
    rate = rng.uniform(3.0, 6.0)
    return out * (0.5 + 0.5 * np.sin(2 * np.pi * rate * t + rng.uniform(0, 2 * np.pi))) ** 2
