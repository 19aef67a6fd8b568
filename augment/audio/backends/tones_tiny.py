"""``tones-tiny``: the embedded event-to-sound diffusion model
(``augment.audio.pipelines.tones_tiny``), or any folder trained by ``synthmill train tones``.

A clip is made in three steps: the pipeline denoises the event's log-mel canvas (one generator per
clip, seeded with the clip's seed), Griffin-Lim (Griffin & Lim 1984, 32 iterations from a random
phase drawn with the same seed) turns it into a waveform, and the event's own samples (its first
``round(duration * 16000)``) are kept at an RMS of -20 dBFS, silence after them.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from augment.audio.backends import CLIP_SAMPLES
from augment.audio.pipelines.tones_tiny import TonesTinyPipeline, encode_events
from augment.audio.soundscape import Event
from augment.audio.spectrogram import LOG_FLOOR, griffin_lim
from augment.audio.world import RMS_DBFS, SAMPLE_RATE, db_to_gain, rms
from augment.config.audio import AudioSamplerSpec, TonesTinySpec
from augment.core.embedded_backend import EmbeddedBackend

EMBEDDED_TONES_TINY = Path(__file__).resolve().parents[2] / "assets" / "tones-tiny"
GRIFFIN_LIM_ITERS = 32


def log_mels_to_clips(log_mels: torch.Tensor, events: list[Event], seeds: list[int],
                      n_iter: int = GRIFFIN_LIM_ITERS) -> np.ndarray:
    """Canvas log-mels (B, N_MELS, FRAMES) -> float32 clips (B, CLIP_SAMPLES) in [-1, 1].

    Each clip is vocoded alone with its seed (so it does not depend on its batch), then keeps its
    event's first round(duration * 16000) samples, set to the world's event level (RMS -20 dBFS,
    as ``render_event``; the mel pseudo-inverse does not keep the level), and is silent after
    them. A clip whose log-mel is not finite is a NaN row.
    """
    silence = torch.full_like(log_mels[:, :, :1], float(np.log(LOG_FLOOR)))
    full = torch.cat([log_mels.float(), silence], dim=-1)  # (B, M, FRAMES + 1): the whole clip
    clips = np.zeros((len(events), CLIP_SAMPLES), dtype=np.float32)
    for row, (mel, event, seed) in enumerate(zip(full, events, seeds)):
        if not torch.isfinite(mel).all():
            clips[row] = np.nan
            continue
        wave = griffin_lim(mel[None], CLIP_SAMPLES, n_iter=n_iter, seed=seed)[0]
        sound = wave[:int(round(event.duration * SAMPLE_RATE))].double().cpu().numpy()
        level = rms(sound)
        gain = db_to_gain(RMS_DBFS) / level if level > 0 else 0.0
        clips[row, :len(sound)] = np.clip(sound * gain, -1, 1)
    return clips


class TonesTinyBackend(EmbeddedBackend):
    """A loaded tones-tiny pipeline (and, on demand, a float32 copy for the NaN retry)."""

    def render(self, events: list[Event], sampler: AudioSamplerSpec, seeds: list[int],
               force_fp32: bool = False) -> np.ndarray:
        """float32 (len(events), CLIP_SAMPLES): each event's clip (see the module docstring),
        made in batches of ``sampler.batch_size``; NaN rows for clips that came out non-finite."""
        if len(seeds) != len(events):
            raise ValueError(f"{len(seeds)} seeds for {len(events)} events")
        pipe = self.sampling_pipe(sampler.scheduler, force_fp32)
        clips = [np.zeros((0, CLIP_SAMPLES), np.float32)]
        for start in range(0, len(events), sampler.batch_size):
            part = events[start:start + sampler.batch_size]
            part_seeds = seeds[start:start + sampler.batch_size]
            generators = [torch.Generator(self.device).manual_seed(s) for s in part_seeds]
            log_mels = pipe(encode_events(part), num_inference_steps=sampler.steps,
                            guidance_scale=sampler.guidance, eta=sampler.eta,
                            noise_temperature=sampler.noise_temperature,
                            generator=generators).log_mels
            clips.append(log_mels_to_clips(log_mels, part, part_seeds))
        return np.concatenate(clips)


def load(spec: TonesTinySpec) -> TonesTinyBackend:
    """The tones-tiny backend of ``spec`` (``spec.path`` None: the embedded weights)."""
    return TonesTinyBackend.load(TonesTinyPipeline, spec, EMBEDDED_TONES_TINY, "tones-tiny")
