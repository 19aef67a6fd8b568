"""Mixing event clips onto a background into a soundscape (the Scaper recipe, Salamon et al. 2017).

The background is set to its RMS level (``background_db`` dBFS); each event is scaled so that its
RMS over its own duration is ``snr_db`` above the background's, then added at its onset. Only the
event's own samples are used (the first ``round(duration * sr)`` of its clip), under a 10 ms
raised-cosine attack and release, so no energy lies outside [onset, offset). When the sum would
exceed 0.99 of full scale, the whole mixture (background and events alike, so every SNR is kept) is
scaled down to that peak: mixing never clips.
"""

from __future__ import annotations

import numpy as np

from augment.audio.soundscape import Soundscape
from augment.audio.world import db_to_gain, ramps, render_background, rms

PEAK = 0.99


def event_samples(clip: np.ndarray, duration: float, sample_rate: int) -> np.ndarray:
    """The event's own samples of a clip (its first round(duration * sr)), with the ramps."""
    n = int(round(duration * sample_rate))
    sound = np.asarray(clip[:n], dtype=np.float64)
    return sound * ramps(len(sound), sample_rate)


def mix(soundscape: Soundscape, clips: np.ndarray) -> tuple[np.ndarray, list[float], float]:
    """(waveform float32 (N,) with peak <= 0.99, each event's gain, the mixture's final scale).

    ``clips``: float (len(events), >= longest event) from a backend, in event order.
    """
    sr = soundscape.sample_rate
    background = render_background(soundscape.background, soundscape.duration,
                                   soundscape.background_seed, sr).astype(np.float64)
    background *= db_to_gain(soundscape.background_db) / max(rms(background), 1e-12)
    reference = rms(background)
    out = background.copy()
    gains = []
    for event, clip in zip(soundscape.events, clips):
        sound = event_samples(clip, event.duration, sr)
        level = rms(sound)
        gain = reference * db_to_gain(event.snr_db) / level if level > 0 else 0.0
        start = int(round(event.onset * sr))
        out[start:start + len(sound)] += gain * sound
        gains.append(float(gain))
    peak = float(np.abs(out).max()) if out.size else 0.0
    scale = PEAK / peak if peak > PEAK else 1.0
    return (out * scale).astype(np.float32), [g * scale for g in gains], scale
