"""``stable-audio``: event clips from ``StableAudioPipeline`` (Evans et al. 2024, "Stable Audio
Open"), 44.1 kHz stereo, averaged to mono and resampled to 16 kHz.

A T5 prompt encoding and the timing condition (start 0 s, end CLIP_SECONDS) condition a diffusion
transformer over the latents of an Oobleck autoencoder. The model samples its whole window (47 s
for Stable Audio Open) and the pipeline keeps the first CLIP_SECONDS. Prompts are padded to the
tokenizer's full length, so batching does not change a clip.

The model is sampled with its own scheduler (``CosineDPMSolverMultistepScheduler`` for Stable
Audio Open, which needs ``torchsde``): its noise levels and timestep encoding are part of the
model, so ``sampler.scheduler`` must be "dpmsolver++". The negative prompt is encoded when given;
an empty one leaves the unconditional branch at zeros, as the model was trained.
"""

from __future__ import annotations

import torch
from diffusers import StableAudioPipeline

from augment.audio.backends import CLIP_SECONDS
from augment.audio.backends.text_to_audio import TextToAudioBackend, generators, initial_noise
from augment.config.audio import AudioSamplerSpec, StableAudioSpec

OWN_SCHEDULER = "dpmsolver++"
"""The ``sampler.scheduler`` name under which Stable Audio runs its own DPM-Solver++ scheduler."""


class StableAudioBackend(TextToAudioBackend):
    pipeline_class = StableAudioPipeline
    weight_folders = ("text_encoder", "projection_model", "transformer", "vae")

    def sample_rate(self, pipe) -> int:
        return int(pipe.vae.config.sampling_rate)

    def scheduler_for(self, name: str):
        """A fresh copy of the model's own scheduler (its sampler keeps noise state per run)."""
        if name != OWN_SCHEDULER:
            raise ValueError(f"sampler.scheduler: stable-audio samples with its own "
                             f"{type(self._scheduler).__name__}; set {OWN_SCHEDULER!r}, "
                             f"got {name!r}")
        return type(self._scheduler).from_config(self._scheduler.config)

    def generate(self, pipe, prompts: list[str], sampler: AudioSamplerSpec,
                 seeds: list[int]) -> torch.Tensor:
        """(B, C, N) waveforms at the VAE's rate, N = int(CLIP_SECONDS * rate)."""
        window = pipe.transformer.config
        latents = initial_noise(seeds, (window.in_channels, window.sample_size),
                                sampler.noise_temperature, pipe._execution_device,
                                pipe.transformer.dtype)
        negative = [sampler.negative_prompt] * len(prompts) if sampler.negative_prompt else None
        return pipe(prompt=prompts, negative_prompt=negative,
                    audio_start_in_s=0.0, audio_end_in_s=CLIP_SECONDS,
                    num_inference_steps=sampler.steps, guidance_scale=sampler.guidance,
                    eta=sampler.eta, generator=generators(seeds), latents=latents,
                    output_type="pt").audios


def load(spec: StableAudioSpec) -> StableAudioBackend:
    return StableAudioBackend.load(spec)
