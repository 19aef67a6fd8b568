"""Audio generator backends: each renders event clips.

A loaded audio backend has ``render(events, sampler, seeds, force_fp32=False)``: for a list of
``augment.audio.soundscape.Event`` it returns float32 waveforms (len(events), CLIP_SAMPLES) in
[-1, 1] at 16 kHz, the event's sound in its first ``round(event.duration * 16000)`` samples (the
mixer keeps only those, with 10 ms ramps), NaN rows for failed clips; ``prompt(event, sampler)``
(the text it was prompted with, or None), ``model_id`` and ``weights``.
"""

from augment.audio.world import SAMPLE_RATE

CLIP_SECONDS = 2.048
"""Length of every rendered event clip: longer than the longest event (2 s), 128 hops of 256."""
CLIP_SAMPLES = int(round(CLIP_SECONDS * SAMPLE_RATE))
