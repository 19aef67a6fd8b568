"""Soundscapes: the labels of an audio sample, drawn before any sound exists.

``sample_soundscape(spec, seed, index)`` draws a ``Soundscape`` (a background and events with
class, pitch band, frequency, onset, duration and SNR) from a ``SoundscapeSpec`` with a per-sample
seed derived from ``(seed, index)``, as Scaper draws from its event specification; the JSON of a
soundscape holds every value drawn, so ``Soundscape.from_json`` rebuilds it exactly.

Onsets and durations lie on the sample grid, so an event's onset and offset in seconds are exactly
where its first and last samples are.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass

import numpy as np

from augment.audio.world import (BACKGROUND_PHRASES, CLASS_PHRASES, CLASSES, sample_frequency,
                                 sample_pitch)
from augment.config.audio import SoundscapeSpec
from augment.core.seeds import sample_seeds

_PLACEMENT_TRIES = 50


@dataclass(frozen=True)
class Event:
    """One sound event of a soundscape.

    ``pitch`` is the pitch band asked for (None: left to the generator); ``frequency`` the exact
    fundamental a procedural render uses (None with the pitch); ``onset`` and ``duration`` are in
    seconds on the sample grid; ``snr_db`` is the event's RMS over the background's; ``seed`` draws
    what a procedural render leaves to chance (noise, click times, an open pitch band).
    """

    label: str
    pitch: str | None
    frequency: float | None
    onset: float
    duration: float
    snr_db: float
    seed: int

    @property
    def offset(self) -> float:
        """Onset + duration, on the sample grid (whose times have at most 7 decimals)."""
        return round(self.onset + self.duration, 7)

    @property
    def category_id(self) -> int:
        return CLASSES.index(self.label) + 1

    @property
    def phrase(self) -> str:
        """E.g. "a high beep" ("a rising chirp" when the pitch is left open)."""
        words = ([self.pitch] if self.pitch else []) + [CLASS_PHRASES[self.label]]
        text = " ".join(words)
        return ("an " if text[0] in "aeiou" else "a ") + text


@dataclass(frozen=True)
class Soundscape:
    """A sample's condition: events (in onset order) over a background."""

    duration: float
    sample_rate: int
    background: str
    background_db: float
    background_seed: int
    events: tuple[Event, ...]

    @property
    def num_samples(self) -> int:
        return int(round(self.duration * self.sample_rate))

    @property
    def caption(self) -> str:
        """E.g. "a high beep and a falling chirp over pink noise"."""
        phrases = [event.phrase for event in self.events]
        if not phrases:
            text = "silence"
        elif len(phrases) == 1:
            text = phrases[0]
        else:
            text = ", ".join(phrases[:-1]) + " and " + phrases[-1]
        return f"{text} over {BACKGROUND_PHRASES[self.background]}"

    def frame_activity(self, hop: float, categories: list[str] | tuple[str, ...] = CLASSES
                       ) -> np.ndarray:
        """(frames, K) uint8: frame t of class k is 1 when an event of class k sounds during
        [t * hop, (t + 1) * hop); frames = ceil(duration / hop)."""
        frames = int(np.ceil(self.duration / hop - 1e-9))
        out = np.zeros((frames, len(categories)), dtype=np.uint8)
        for event in self.events:
            first = int(np.floor(event.onset / hop + 1e-9))
            last = int(np.ceil(event.offset / hop - 1e-9))  # exclusive
            out[first:min(last, frames), categories.index(event.label)] = 1
        return out

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "Soundscape":
        raw = json.loads(text)
        raw["events"] = tuple(Event(**event) for event in raw["events"])
        return cls(**raw)


def sample_soundscape(spec: SoundscapeSpec, seed: int, index: int) -> Soundscape:
    """Draw the soundscape of sample ``index`` of a run seeded with ``seed`` (deterministic)."""
    rng = np.random.default_rng(sample_seeds(seed, index)[0])
    sr = spec.sample_rate
    probs = spec.class_probabilities()
    n_events = int(rng.integers(spec.events_per_scape[0], spec.events_per_scape[1] + 1))
    events: list[Event] = []
    for _ in range(n_events):
        label = str(list(probs)[rng.choice(len(probs), p=list(probs.values()))])
        pitch = sample_pitch(label, spec.pitches, spec.pitch_bias, rng)
        frequency = sample_frequency(pitch, rng)
        if rng.random() < spec.pitch_unspecified:
            pitch, frequency = None, None
        duration = round(rng.uniform(*spec.event_duration) * sr) / sr
        snr = float(rng.uniform(*spec.snr_db))
        texture = int(rng.integers(2**31))
        for _ in range(_PLACEMENT_TRIES):
            onset = int(rng.integers(0, round((spec.duration - duration) * sr) + 1)) / sr
            candidate = Event(label, pitch, frequency, onset, duration, snr, texture)
            if _polyphony(events + [candidate]) <= spec.max_polyphony:
                events.append(candidate)
                break
    background = str(spec.backgrounds[rng.integers(len(spec.backgrounds))])
    return Soundscape(duration=round(spec.duration * sr) / sr, sample_rate=sr,
                      background=background, background_db=float(rng.uniform(*spec.background_db)),
                      background_seed=int(rng.integers(2**31)),
                      events=tuple(sorted(events, key=lambda e: (e.onset, e.label))))


def _polyphony(events: list[Event]) -> int:
    """Most events sounding at one instant."""
    changes = sorted([(e.onset, 1) for e in events] + [(e.offset, -1) for e in events],
                     key=lambda c: (c[0], c[1]))
    level = peak = 0
    for _, step in changes:
        level += step
        peak = max(peak, level)
    return peak


def categories() -> list[str]:
    """Category names of every audio dataset; id ``i + 1`` is ``categories()[i]``."""
    return list(CLASSES)

