"""``tones-world``: the procedural event renderer as a backend, so real reference soundscapes are
made by the same dataset flow (same folder contract, exact labels) as generated ones.

An event whose pitch band is left open gets one from the world's own distribution (uniform),
drawn from its seed."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from augment.audio.backends import CLIP_SAMPLES
from augment.audio.soundscape import Event
from augment.audio.world import PITCHES, SAMPLE_RATE, render_event, sample_frequency
from augment.config.audio import AudioSamplerSpec, TonesWorldSpec


@dataclass
class TonesWorldBackend:
    """Renders real event clips; ``seeds`` draw what the event leaves open."""

    model_id: str = "tones-world (procedural renderer)"
    weights: str = "none"

    def render(self, events: list[Event], sampler: AudioSamplerSpec, seeds: list[int],
               force_fp32: bool = False) -> np.ndarray:
        """float32 (len(events), CLIP_SAMPLES): each event's clip, silence after it."""
        clips = np.zeros((len(events), CLIP_SAMPLES), dtype=np.float32)
        for row, (event, seed) in enumerate(zip(events, seeds)):
            frequency = event.frequency
            if frequency is None:
                rng = np.random.default_rng(seed)
                frequency = sample_frequency(PITCHES[rng.integers(len(PITCHES))], rng)
            clip = render_event(event.label, frequency, event.duration, event.seed, SAMPLE_RATE)
            clips[row, :len(clip)] = clip
        return clips

    def prompt(self, event: Event, sampler: AudioSamplerSpec) -> None:
        return None


def load(spec: TonesWorldSpec) -> TonesWorldBackend:
    return TonesWorldBackend()
