"""The pretrained text-to-audio backends (``audioldm2``, ``stable-audio``): what they share.

Each event clip is generated from a prompt naming its class and pitch band
(``sampler.prompt_template`` with ``{caption}`` = ``event.phrase``, e.g. "a high beep"), then made
a clip of the audio backend interface (``augment.audio.backends``): float32 (B, CLIP_SAMPLES) at
16 kHz mono, the event's sound in its first ``round(duration * 16000)`` samples and silence after,
NaN rows for clips whose audio was not finite (``augment.core.backends.render_guarded`` retries
those in float32, with a float32 copy of a half-precision pipeline loaded on first need).

As the image backends: weights load from a local diffusers folder or a hub id already in the local
Hugging Face cache (``resolve_model_path``), safetensors only; the initial noise of each clip is
drawn on the CPU from its own generator (seed = the clip's seed), so a clip regenerates alone,
whatever else is in its batch and whatever the GPU.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch
import torchaudio
from diffusers.utils.torch_utils import randn_tensor

from augment.audio.backends import CLIP_SAMPLES
from augment.audio.soundscape import Event, Soundscape
from augment.audio.world import SAMPLE_RATE
from augment.config.audio import AudioSamplerSpec, TextToAudioSpec
from augment.core.devices import resolve_device, resolve_dtype
from augment.core.io import sha256_text
from augment.core.pipeline_backend import PipelineBackend
from augment.core.weights import resolve_model_path, weights_hash


@dataclass(kw_only=True)
class TextToAudioBackend(PipelineBackend):
    """A loaded text-to-audio pipeline. Subclasses name the pipeline class and the folders holding
    its weights, and implement ``generate`` (one batch of prompts to raw model audio) and
    ``sample_rate``; they may override ``scheduler_for``, ``replaced_components`` and
    ``optimise``."""

    pipeline_class: ClassVar[type]
    weight_folders: ClassVar[tuple[str, ...]]

    spec: TextToAudioSpec
    folder: Path

    @classmethod
    def load(cls, spec: TextToAudioSpec):
        """The backend for ``spec``: ``spec.path`` is a local folder or a hub id in the local cache
        (offline, a missing one is an error naming it and ``model.path``)."""
        folder = resolve_model_path(spec.path, None)
        device = resolve_device(spec.device)
        dtype = resolve_dtype(spec.dtype, device)
        pipe = cls.build_pipeline(spec, folder, dtype, device)
        return cls(spec=spec, pipe=pipe, folder=folder, model_id=spec.path,
                   weights=components_hash(folder, cls.weight_folders), device=device, dtype=dtype)

    @classmethod
    def build_pipeline(cls, spec: TextToAudioSpec, folder: Path, dtype: torch.dtype,
                       device: torch.device):
        """``cls.pipeline_class`` from ``folder`` in ``dtype`` (safetensors only), optimised, then
        on ``device`` or, with ``spec.cpu_offload``, each model moved there while it runs."""
        kwargs = {"dtype": dtype, "use_safetensors": True}
        try:
            pipe = cls.pipeline_class.from_pretrained(
                folder, **cls.replaced_components(folder, kwargs), **kwargs)
        except (OSError, ValueError, TypeError, ImportError) as exc:
            reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise FileNotFoundError(f"cannot load {spec.backend} weights (safetensors) from "
                                    f"{folder}: {reason}") from exc
        pipe.set_progress_bar_config(disable=True)
        cls.optimise(pipe)
        if spec.cpu_offload:
            pipe.enable_model_cpu_offload(device=device)
        else:
            pipe.to(device)
        return pipe

    @classmethod
    def replaced_components(cls, folder: Path, kwargs: dict) -> dict:
        """Components to load differently from what ``model_index.json`` says (none here)."""
        return {}

    @classmethod
    def optimise(cls, pipe) -> None:
        """Speed-ups that leave the numbers alone (none here)."""

    def render(self, events: list[Event], sampler: AudioSamplerSpec, seeds: list[int],
               force_fp32: bool = False) -> np.ndarray:
        """Clips float32 (len(events), CLIP_SAMPLES) at 16 kHz for ``events``, generated from
        ``seeds`` (one per event); NaN rows for clips whose audio was not finite."""
        if len(seeds) != len(events):
            raise ValueError(f"got {len(events)} events but {len(seeds)} seeds")
        if not events:
            return np.zeros((0, CLIP_SAMPLES), dtype=np.float32)
        prompts = [self.prompt(event, sampler) for event in events]
        # One batch at a time: the scheduler is pipeline state, and the GPU is the bottleneck.
        with self.lock:
            pipe = self.pipe_for(force_fp32, sampler.scheduler)
            audio = self.generate(pipe, prompts, sampler, seeds)
        return to_clips(audio, self.sample_rate(pipe), [event.duration for event in events])

    def prompt(self, condition: Event | Soundscape, sampler: AudioSamplerSpec) -> str:
        """The text an event's clip is generated from, e.g. "a high beep"; for a soundscape (what
        a manifest row records), its events' prompts in onset order joined by " | "."""
        if isinstance(condition, Soundscape):
            return " | ".join(self.prompt(event, sampler) for event in condition.events)
        return sampler.prompt_template.format(caption=condition.phrase)

    def generate(self, pipe, prompts: list[str], sampler: AudioSamplerSpec,
                 seeds: list[int]) -> torch.Tensor:
        """Audio of ``prompts``: (B, N) mono or (B, C, N) at ``sample_rate(pipe)``."""
        raise NotImplementedError

    def sample_rate(self, pipe) -> int:
        raise NotImplementedError

    def rebuild(self, dtype: torch.dtype):
        return self.build_pipeline(self.spec, self.folder, dtype, self.device)


def components_hash(folder: Path, names: tuple[str, ...]) -> str:
    """16 hex digits over the safetensors of the pipeline's weight folders ``names``."""
    return sha256_text("\n".join(f"{name}:{weights_hash(folder / name)}" for name in names))[:16]


def initial_noise(seeds: list[int], shape: tuple[int, ...], temperature: float,
                  device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """(B, *shape) Gaussian latents times the noise temperature; sample i drawn on the CPU from a
    generator seeded with ``seeds[i]``, then moved to ``device`` and ``dtype``."""
    noise = randn_tensor((len(seeds), *shape), generator=generators(seeds),
                         device=torch.device("cpu"), dtype=torch.float32)
    return (noise * temperature).to(device=device, dtype=dtype)


def generators(seeds: list[int]) -> list[torch.Generator]:
    """One CPU generator per sample (for the schedulers that draw noise while sampling)."""
    return [torch.Generator("cpu").manual_seed(int(s)) for s in seeds]


def to_clips(audio: torch.Tensor, sample_rate: int, durations: list[float]) -> np.ndarray:
    """Model audio (B, N) or (B, C, N) at ``sample_rate`` -> float32 (B, CLIP_SAMPLES) clips.

    Channels are averaged to mono, then resampled to 16 kHz (``torchaudio.functional.resample``,
    windowed sinc), cut or zero-padded to CLIP_SAMPLES; a clip peaking above 1 is scaled down to a
    peak of 1 (the mixer sets its level anyway); samples after ``round(duration * 16000)`` are
    zeros. A clip with any NaN/inf in the model's audio is a row of NaN.
    """
    audio = audio.detach().float().cpu()
    if audio.ndim == 3:
        audio = audio.mean(dim=1)  # (B, N)
    bad = ~torch.isfinite(audio).all(dim=1)
    audio = torch.nan_to_num(audio, nan=0.0, posinf=0.0, neginf=0.0)
    if sample_rate != SAMPLE_RATE:
        audio = torchaudio.functional.resample(audio, sample_rate, SAMPLE_RATE)
    clips = np.zeros((len(audio), CLIP_SAMPLES), dtype=np.float32)
    n = min(audio.shape[1], CLIP_SAMPLES)
    clips[:, :n] = audio[:, :n].numpy()
    for row, duration in enumerate(durations):
        clips[row, int(round(duration * SAMPLE_RATE)):] = 0.0
    peaks = np.abs(clips).max(axis=1, keepdims=True)
    clips /= np.maximum(peaks, 1.0)
    clips[bad.numpy()] = np.nan
    return clips
