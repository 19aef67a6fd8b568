"""``audioldm2``: event clips from ``AudioLDM2Pipeline`` (Liu et al. 2023, "AudioLDM 2: Learning
Holistic Audio Generation with Self-supervised Pretraining"), 16 kHz mono.

A prompt is encoded by CLAP and Flan-T5, projected, and GPT-2 generates 8 conditioning vectors from
it; a latent diffusion UNet over mel spectrograms cross-attends to both, and a HiFi-GAN vocoder
makes the waveform. Each distinct text (prompts and the negative prompt) is encoded alone and the
result cached per pipeline: encoded in a batch, GPT-2 would see padded positions and a clip would
depend on the other prompts of its batch. The T5 states are then padded to a common length with a
zero attention mask, so the UNet ignores the padding.

The language model is loaded as ``GPT2LMHeadModel`` whatever ``model_index.json`` says: released
checkpoints (e.g. ``cvssp/audioldm2``) store a ``GPT2Model``, which lacks the generation helpers
the pipeline calls with current ``transformers`` (diffusers issue #12630); the weights are the
same (the LM head is tied to the token embeddings and never used).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from diffusers import AudioLDM2Pipeline
from diffusers.models.attention_processor import AttnProcessor2_0
from transformers import GPT2LMHeadModel

from augment.audio.backends import CLIP_SECONDS
from augment.audio.backends.text_to_audio import TextToAudioBackend, generators, initial_noise
from augment.config.audio import AudioLDM2Spec, AudioSamplerSpec

Encoded = tuple[torch.Tensor, torch.Tensor, torch.Tensor]
"""T5 states (1, L, D), their attention mask (1, L), GPT-2's generated states (1, 8, D')."""


class AudioLDM2Backend(TextToAudioBackend):
    pipeline_class = AudioLDM2Pipeline
    weight_folders = ("text_encoder", "text_encoder_2", "projection_model", "language_model",
                      "unet", "vae", "vocoder")

    def __post_init__(self):
        super().__post_init__()
        self._encoded: dict[tuple[int, str], Encoded] = {}

    @classmethod
    def replaced_components(cls, folder: Path, kwargs: dict) -> dict:
        return {"language_model": GPT2LMHeadModel.from_pretrained(folder / "language_model",
                                                                  **kwargs)}

    @classmethod
    def optimise(cls, pipe) -> None:
        """SDPA attention (FlashAttention / memory-efficient kernels on a GPU) in the UNet, stored
        channels-last (the text encoders use SDPA by default where ``transformers`` has it)."""
        pipe.unet.set_attn_processor(AttnProcessor2_0())
        pipe.unet.to(memory_format=torch.channels_last)

    def sample_rate(self, pipe) -> int:
        return int(pipe.vocoder.config.sampling_rate)

    def generate(self, pipe, prompts: list[str], sampler: AudioSamplerSpec,
                 seeds: list[int]) -> torch.Tensor:
        """(B, N) waveforms at the vocoder's rate, N = int(CLIP_SECONDS * rate)."""
        # 1. Encode each distinct text alone (cached), then pad the batch to one T5 length; the
        #    unconditional branch of guidance is the negative prompt, "" when there is none
        negative = [sampler.negative_prompt] * len(prompts) if sampler.guidance > 1.0 else None
        texts = prompts + (negative or [])
        encoded = {text: self._encode(pipe, text) for text in dict.fromkeys(texts)}
        length = max(states.shape[1] for states, _, _ in encoded.values())
        states, mask, generated = batch_encoded([encoded[t] for t in prompts], length)
        conditioning = {"prompt_embeds": states, "attention_mask": mask,
                        "generated_prompt_embeds": generated}
        if negative is not None:
            states, mask, generated = batch_encoded([encoded[t] for t in negative], length)
            conditioning.update(negative_prompt_embeds=states, negative_attention_mask=mask,
                                negative_generated_prompt_embeds=generated)
        # 2. Noise of each clip, from its own seed
        latents = initial_noise(seeds, latent_shape(pipe), sampler.noise_temperature,
                                pipe._execution_device, pipe.unet.dtype)
        # 3. Denoise, decode, vocode
        return pipe(audio_length_in_s=CLIP_SECONDS, num_inference_steps=sampler.steps,
                    guidance_scale=sampler.guidance, eta=sampler.eta,
                    generator=generators(seeds), latents=latents, output_type="pt",
                    **conditioning).audios

    @torch.no_grad()
    def _encode(self, pipe, text: str) -> Encoded:
        key = (id(pipe), text)
        if key not in self._encoded:
            self._encoded[key] = pipe.encode_prompt(text, pipe._execution_device, 1, False)
        return self._encoded[key]


def batch_encoded(items: list[Encoded], length: int) -> Encoded:
    """Stack encoded texts, T5 states zero-padded to ``length`` with attention mask 0 there."""
    states = torch.cat([torch.nn.functional.pad(s, (0, 0, 0, length - s.shape[1]))
                        for s, _, _ in items])
    mask = torch.cat([torch.nn.functional.pad(m, (0, length - m.shape[1])) for _, m, _ in items])
    return states, mask, torch.cat([g for _, _, g in items])


def latent_shape(pipe) -> tuple[int, int, int]:
    """(C, T, F) latents whose mel spectrogram covers CLIP_SECONDS: T frames of the vocoder's hop,
    rounded up to a multiple of the VAE's factor (the pipeline crops the waveform back)."""
    f = pipe.vae_scale_factor
    hop_seconds = np.prod(pipe.vocoder.config.upsample_rates) / pipe.vocoder.config.sampling_rate
    frames = int(np.ceil(np.ceil(CLIP_SECONDS / hop_seconds) / f)) * f
    return (pipe.unet.config.in_channels, frames // f, pipe.vocoder.config.model_in_dim // f)


def load(spec: AudioLDM2Spec) -> AudioLDM2Backend:
    return AudioLDM2Backend.load(spec)
