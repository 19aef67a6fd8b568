"""``tones-tiny``: the embedded event-to-sound diffusion model of the tones world.

A ``UNet2DModel`` denoises the log-mel spectrogram of an event clip (``augment.audio.spectrogram``:
64 mels x the first 128 frames = the 2.048 s clip canvas, normalised to about [-1, 1] by fixed
constants of the pipeline's config) with the condition concatenated to its input channels (the
SR3 / Palette recipe, Saharia et al. 2021). The condition is a stack of (mel, frame) maps of the
event, which starts at frame 0 and lasts ``active_frames(duration)`` frames (``CHANNELS``):

- ``class`` x 7: the class one-hot, on the event's frames;
- ``pitch`` x 3: the pitch-band one-hot, on the event's frames (all zero: pitch unspecified, the
  model picks, reproducing its training prior);
- ``band_rows``: the mel rows whose centre frequency lies in the pitch band, on the event's frames
  (where the fundamental goes: a convolution cannot read an absolute position off a one-hot);
- ``activity``: the event's frames;
- ``progress``: how far into the event a frame is, (t + 0.5) / frames on the event's frames, 0
  after (so a sweep can span exactly its event: a chirp is a line from one octave end to the
  other, its direction the class's);
- ``mel_position``: each row's position, -1 (lowest mel) to 1, everywhere, on every sample.

The label channels (class, pitch, band rows) are dropped to zero in training, the pitch ones alone
or all together, so classifier-free guidance (Ho & Salimans 2022) contrasts the labelled prediction
with one that knows only where the event is (``null_condition``).

The UNet may work on p x p patches (``patch_size``; space-to-depth, as in DiT's patchify, Peebles &
Xie 2023): a (1, 64, 128) spectrogram is then (p^2, 64 / p, 128 / p) for it and its condition
(p^2 C, 64 / p, 128 / p). The shipped model uses p = 1: with p = 2 (half the training time) a
steady tone came out alternating between even and odd frames, which a listener, and the tones
classifier, hear as amplitude modulation. Waveforms come from the log-mels with Griffin-Lim
(Griffin & Lim 1984) in ``augment.audio.backends.tones_tiny``.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch
import torch.nn.functional as F
import torchaudio
from diffusers import DiffusionPipeline, UNet2DModel
from diffusers.schedulers.scheduling_utils import SchedulerMixin
from diffusers.utils import BaseOutput

from augment.audio.soundscape import Event
from augment.audio.spectrogram import F_MAX, F_MIN, HOP, N_FFT, N_MELS
from augment.audio.world import CLASSES, PITCH_BANDS, PITCHES, SAMPLE_RATE
from augment.core.guided_diffusion import (Generators, check_condition, check_sampling_args,
                                           guided_denoise)

FRAMES = 128
"""Frames of the canvas: 128 hops of 256 samples = ``CLIP_SECONDS`` (the log-mel's 129th frame,
centred on the clip's last sample, is silence for every event of at most 2 s)."""

CHANNELS: tuple[str, ...] = (*(f"class:{c}" for c in CLASSES), *(f"pitch:{p}" for p in PITCHES),
                             "band_rows", "activity", "progress", "mel_position")
"""Names of the condition channels, in order."""
COND_CHANNELS = len(CHANNELS)
LABEL_CHANNELS = len(CLASSES) + len(PITCHES) + 1
"""The first channels (class, pitch, band rows) are labels: dropped in training, zero in the null
condition of classifier-free guidance."""
PITCH_CHANNELS = slice(len(CLASSES), LABEL_CHANNELS)
"""The channels of the pitch band (its one-hot and its rows): zero when the pitch is unspecified."""

LOG_MEL_CENTRE, LOG_MEL_SCALE = -3.4, 8.1
"""Default affine map of natural-log mel power to the model's range: (log_mel - centre) / scale
takes silence (log 1e-5 = -11.5) to -1 and the loudest tones-world frames (~ +4.5) to about 1."""


@dataclass
class TonesTinyPipelineOutput(BaseOutput):
    """``log_mels``: (B, N_MELS, FRAMES) float32 natural-log mel power (torch or numpy)."""

    log_mels: torch.Tensor | np.ndarray


def active_frames(duration: float) -> int:
    """Frames of the canvas an event of ``duration`` seconds (starting at sample 0) sounds in:
    frame t covers samples [t * HOP, (t + 1) * HOP)."""
    samples = int(round(duration * SAMPLE_RATE))
    return min(FRAMES, -(-samples // HOP))


@lru_cache(maxsize=1)
def mel_centres() -> torch.Tensor:
    """(N_MELS,) float32: centre frequency (Hz, the filter's centroid) of each mel row of
    ``augment.audio.spectrogram.log_mel``."""
    fb = torchaudio.functional.melscale_fbanks(N_FFT // 2 + 1, F_MIN, F_MAX, N_MELS, SAMPLE_RATE,
                                               norm="slaney", mel_scale="slaney")  # (F, M)
    hz = torch.linspace(0, SAMPLE_RATE / 2, N_FFT // 2 + 1)
    return (fb * hz[:, None]).sum(0) / fb.sum(0)


def band_rows() -> torch.Tensor:
    """(len(PITCHES), N_MELS) float32 in {0, 1}: the rows whose centre lies in each pitch band."""
    centres = mel_centres()
    return torch.stack([((centres >= lo) & (centres <= hi)).float()
                        for lo, hi in (PITCH_BANDS[p] for p in PITCHES)])


def condition_from_labels(classes: torch.Tensor, pitches: torch.Tensor,
                          frames: torch.Tensor) -> torch.Tensor:
    """Build the condition tensor from the events' labels (runs on their device).

    Args:
        classes: (B,) long, ``CLASSES`` index.
        pitches: (B,) long, 0 = unspecified, ``1 + PITCHES.index(p)`` otherwise.
        frames: (B,) long, the event's frames on the canvas (``active_frames``).
    Returns:
        (B, COND_CHANNELS, N_MELS, FRAMES) float32: the labels and activity in {0, 1},
        ``progress`` in [0, 1), ``mel_position`` in [-1, 1].
    """
    device = classes.device
    b = classes.shape[0]
    t = torch.arange(FRAMES, device=device)[None]  # (1, T)
    active = (t < frames[:, None]).float()  # (B, T)
    progress = (t + 0.5) / frames[:, None].clamp(min=1) * active
    activity, progress = (m[:, None, None, :].expand(b, 1, N_MELS, FRAMES)
                          for m in (active, progress))
    cls = F.one_hot(classes, len(CLASSES)).float()[:, :, None, None] * activity
    pitch_hot = F.one_hot(pitches, len(PITCHES) + 1)[:, 1:].float()  # (B, P), zeros if unspecified
    pitch = pitch_hot[:, :, None, None] * activity
    rows = (pitch_hot @ band_rows().to(device))[:, None, :, None] * activity  # (B, 1, M, T)
    position = torch.linspace(-1, 1, N_MELS, device=device)[None, None, :, None]
    return torch.cat([cls, pitch, rows, activity, progress, position.expand(b, 1, N_MELS, FRAMES)],
                     dim=1)


def event_labels(events: list[Event]) -> dict[str, torch.Tensor]:
    """The (B,) long label tensors of ``condition_from_labels`` for ``events``."""
    return {"classes": torch.tensor([CLASSES.index(e.label) for e in events], dtype=torch.long),
            "pitches": torch.tensor([0 if e.pitch is None else 1 + PITCHES.index(e.pitch)
                                     for e in events], dtype=torch.long),
            "frames": torch.tensor([active_frames(e.duration) for e in events], dtype=torch.long)}


def encode_events(events: list[Event]) -> torch.Tensor:
    """Events -> condition tensor (B, COND_CHANNELS, N_MELS, FRAMES) float32 (onsets ignored:
    a clip holds its event from sample 0)."""
    for event in events:
        if event.label not in CLASSES or (event.pitch is not None and event.pitch not in PITCHES):
            raise ValueError(f"event {event}: unknown class or pitch band; classes "
                             f"{list(CLASSES)}, pitch bands {list(PITCHES)} or None")
    return condition_from_labels(**event_labels(events))


def null_condition(condition: torch.Tensor) -> torch.Tensor:
    """The condition with every label dropped (``LABEL_CHANNELS`` zero), where the event is
    kept: the input of the unconditional prediction. Same shape and dtype."""
    null = condition.clone()
    null[:, :LABEL_CHANNELS] = 0
    return null


def to_patches(x: torch.Tensor, patch_size: int) -> torch.Tensor:
    """(B, K, H, W) -> (B, K p^2, H / p, W / p), space-to-depth."""
    return F.pixel_unshuffle(x, patch_size) if patch_size > 1 else x


def from_patches(x: torch.Tensor, patch_size: int) -> torch.Tensor:
    """Inverse of ``to_patches``."""
    return F.pixel_shuffle(x, patch_size) if patch_size > 1 else x


def make_unet(block_out_channels: tuple[int, ...] = (16, 32, 64, 96, 128),
              layers_per_block: int = 1, patch_size: int = 1,
              attention_levels: int = 1) -> UNet2DModel:
    """The shipped architecture: a UNet on ``patch_size`` patches, self-attention at the
    ``attention_levels`` coarsest resolutions (and in the middle block)."""
    if N_MELS % patch_size or FRAMES % patch_size:
        raise ValueError(f"patch_size {patch_size} must divide {N_MELS} mels and {FRAMES} frames")
    n = len(block_out_channels)
    if not 0 <= attention_levels <= n:
        raise ValueError(f"attention_levels must lie in [0, {n}], got {attention_levels}")
    down = ["DownBlock2D"] * (n - attention_levels) + ["AttnDownBlock2D"] * attention_levels
    up = ["AttnUpBlock2D"] * attention_levels + ["UpBlock2D"] * (n - attention_levels)
    return UNet2DModel(
        sample_size=(N_MELS // patch_size, FRAMES // patch_size),
        in_channels=patch_size ** 2 * (1 + COND_CHANNELS), out_channels=patch_size ** 2,
        block_out_channels=tuple(block_out_channels), layers_per_block=layers_per_block,
        down_block_types=tuple(down), up_block_types=tuple(up), norm_num_groups=8,
        attention_head_dim=min(32, block_out_channels[-1]), add_attention=True,
    )


class TonesTinyPipeline(DiffusionPipeline):
    """Event-conditioned sampling of log-mel spectrograms with classifier-free guidance.

    ``pipe(condition, ...)`` takes the tensor of ``encode_events``; ``pipe.from_events(events,
    ...)`` encodes for you. Log-mels come back as (B, N_MELS, FRAMES) float32 natural-log mel
    power, torch ("pt") or numpy ("np"). ``log_mel_centre`` / ``log_mel_scale`` (the data
    normalisation) and ``patch_size`` are the pipeline's config (``model_index.json``).
    """

    model_cpu_offload_seq = "unet"

    def __init__(self, unet: UNet2DModel, scheduler: SchedulerMixin,
                 log_mel_centre: float = LOG_MEL_CENTRE, log_mel_scale: float = LOG_MEL_SCALE,
                 patch_size: int = 1):
        super().__init__()
        self.register_modules(unet=unet, scheduler=scheduler)
        self.register_to_config(log_mel_centre=log_mel_centre, log_mel_scale=log_mel_scale,
                                patch_size=patch_size)

    def normalise(self, log_mels: torch.Tensor) -> torch.Tensor:
        """Natural-log mel power -> the model's range (about [-1, 1]); any shape."""
        return (log_mels - self.config.log_mel_centre) / self.config.log_mel_scale

    def denormalise(self, x: torch.Tensor) -> torch.Tensor:
        """Inverse of ``normalise``."""
        return x * self.config.log_mel_scale + self.config.log_mel_centre

    def check_inputs(self, condition, generator, num_inference_steps, guidance_scale,
                     noise_temperature, output_type):
        check_condition(condition, (COND_CHANNELS, N_MELS, FRAMES), "encode_events")
        check_sampling_args(condition.shape[0], generator, num_inference_steps, guidance_scale,
                            noise_temperature)
        if output_type not in ("np", "pt"):
            raise ValueError(f"`output_type` must be 'np' or 'pt', got {output_type!r}")
        p = self.config.patch_size
        if self.unet.config.out_channels != p * p:
            raise ValueError(f"the unet predicts {self.unet.config.out_channels} channels; "
                             f"patch_size {p} needs {p * p}")

    @torch.no_grad()
    def __call__(self, condition: torch.Tensor, num_inference_steps: int = 20,
                 guidance_scale: float = 2.0, eta: float = 0.0, noise_temperature: float = 1.0,
                 generator: Generators = None, output_type: str = "pt", return_dict: bool = True):
        # 1. Check inputs
        self.check_inputs(condition, generator, num_inference_steps, guidance_scale,
                          noise_temperature, output_type)
        device, dtype = self._execution_device, self.unet.dtype
        p = self.config.patch_size
        condition = condition.to(device=device, dtype=dtype)

        # 2. Condition and null condition as patches: (B, p^2 C, M / p, T / p)
        cond = to_patches(condition, p)
        null = to_patches(null_condition(condition), p)
        shape = (condition.shape[0], p * p, N_MELS // p, FRAMES // p)

        # 3. Denoise from one generator per sample
        x = guided_denoise(self.unet, self.scheduler, cond, null, shape, num_inference_steps,
                           guidance_scale, eta, noise_temperature, generator, self.progress_bar)

        # 4. Post-process: patches in [-1, 1] -> (B, M, T) natural-log mel power
        log_mels = self.denormalise(from_patches(x.float(), p).clamp(-1, 1)[:, 0])
        if output_type == "np":
            log_mels = log_mels.cpu().numpy()
        self.maybe_free_model_hooks()
        if not return_dict:
            return (log_mels,)
        return TonesTinyPipelineOutput(log_mels=log_mels)

    def from_events(self, events: list[Event], **kwargs):
        """Sample log-mels for ``augment.audio.soundscape.Event`` objects (kwargs: ``__call__``)."""
        return self(encode_events(events), **kwargs)


def canvas_frames(log_mels: torch.Tensor) -> torch.Tensor:
    """(B, N_MELS, T >= FRAMES) log-mels of clips -> their first FRAMES frames (the canvas)."""
    if log_mels.shape[-1] < FRAMES:
        raise ValueError(f"log-mels have {log_mels.shape[-1]} frames; the canvas needs {FRAMES}")
    return log_mels[..., :FRAMES]

