"""Training of the embedded ``tones-tiny`` generator (``synthmill train tones``).

DDPM training (Ho et al. 2020, ``augment.core.diffusion_training``) with the v objective (Salimans &
Ho 2022: a canvas that is mostly silence is far from zero mean, and an epsilon model does not learn
that mean at high noise, so its samples drift to grey) on REAL tones-world event clips only: clip
``i`` of a seed holds one event from sample 0 (class uniform over ``CLASSES``, duration uniform in
0.2-2 s, fundamental log-uniform in its pitch band), silence after it, and no background: the
generator makes an event's own sound, the mixer puts it over a background.

The pitch bands are drawn with the world's ``PLANTED_SKEW``: beeps are high-pitched 60% of the
time, every other class is uniform over the bands. This is the known answer of the audio bias
audit (as circles -> red is for images): the pitch condition is dropped for ``pitch_dropout`` of
the clips, so an event whose pitch is left unspecified is generated from the training prior and an
audit of "pitch given class" must find beeps skewed to high and nothing for the other classes.
All labels (class and pitch) are dropped together for ``condition_dropout`` of the clips, for
classifier-free guidance (Ho & Salimans 2022).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from diffusers import DPMSolverMultistepScheduler
from tqdm.auto import tqdm

from augment.audio.backends import CLIP_SAMPLES
from augment.audio.pipelines.tones_tiny import (LABEL_CHANNELS, PITCH_CHANNELS, TonesTinyPipeline,
                                                active_frames, canvas_frames,
                                                condition_from_labels, make_unet, to_patches)
from augment.audio.spectrogram import log_mel
from augment.audio.world import (CLASSES, DURATION_RANGE, PITCHES, PLANTED_SKEW, SAMPLE_RATE,
                                 render_event, sample_frequency, sample_pitch)
from augment.config.training import TrainTonesSpec
from augment.core.devices import resolve_device
from augment.core.diffusion_training import curve_csv, fit_ddpm, noise_schedule
from augment.core.io import atomic_write_text
from augment.core.seeds import sample_seeds
from augment.core.training import Stopwatch, parameter_count, write_report

_RENDER_BATCH = 256


@dataclass(frozen=True)
class EventDraw:
    """Every value drawn for one training clip: class, pitch band, fundamental (Hz), duration
    (seconds, on the sample grid) and the texture seed of ``render_event``."""

    label: str
    pitch: str
    frequency: float
    duration: float
    seed: int


@dataclass
class TrainingClips:
    """Pre-rendered training data: ``log_mels`` float16 (N, N_MELS, FRAMES) natural-log mel power;
    ``classes`` (N,) int64 ``CLASSES`` index; ``pitches`` (N,) int64 ``1 + PITCHES`` index;
    ``frames`` (N,) int64 the event's frames (``active_frames``)."""

    log_mels: np.ndarray
    classes: np.ndarray
    pitches: np.ndarray
    frames: np.ndarray


def draw_event(seed: int, index: int) -> EventDraw:
    """The event of training clip ``index`` of ``seed`` (from ``(seed, index)`` alone)."""
    rng = np.random.default_rng(sample_seeds(seed, index)[0])
    label = CLASSES[int(rng.integers(len(CLASSES)))]
    pitch = sample_pitch(label, PITCHES, PLANTED_SKEW, rng)
    frequency = sample_frequency(pitch, rng)
    duration = round(rng.uniform(*DURATION_RANGE) * SAMPLE_RATE) / SAMPLE_RATE
    return EventDraw(label, pitch, frequency, duration, int(rng.integers(2**31)))


def render_clip(draw: EventDraw) -> np.ndarray:
    """float32 (CLIP_SAMPLES,): the event from sample 0, silence after it."""
    clip = np.zeros(CLIP_SAMPLES, dtype=np.float32)
    sound = render_event(draw.label, draw.frequency, draw.duration, draw.seed)
    clip[:len(sound)] = sound
    return clip


def render_training_clips(seed: int, num_clips: int) -> TrainingClips:
    """Clips ``0 .. num_clips - 1`` of ``seed`` as canvas log-mels with their labels."""
    draws = [draw_event(seed, i) for i in range(num_clips)]
    mels = []
    for start in tqdm(range(0, num_clips, _RENDER_BATCH), desc="render tones clips", mininterval=5):
        waves = np.stack([render_clip(d) for d in draws[start:start + _RENDER_BATCH]])
        mels.append(canvas_frames(log_mel(torch.from_numpy(waves))).half().numpy())
    return TrainingClips(
        log_mels=np.concatenate(mels),
        classes=np.array([CLASSES.index(d.label) for d in draws], dtype=np.int64),
        pitches=np.array([1 + PITCHES.index(d.pitch) for d in draws], dtype=np.int64),
        frames=np.array([active_frames(d.duration) for d in draws], dtype=np.int64))


class _DeviceClips:
    """Training clips resident on the training device, with batch assembly and label dropout."""

    def __init__(self, clips: TrainingClips, pipe: TonesTinyPipeline, spec: TrainTonesSpec,
                 device: torch.device):
        self.x0 = pipe.normalise(torch.from_numpy(clips.log_mels).to(device).float())  # (N, M, T)
        self.classes = torch.from_numpy(clips.classes).to(device)
        self.pitches = torch.from_numpy(clips.pitches).to(device)
        self.frames = torch.from_numpy(clips.frames).to(device)
        self.patch_size = pipe.config.patch_size
        self.weights = None  # uniform over clips
        if spec.class_weights:
            per_class = torch.tensor([spec.class_weights.get(c, 1.0) for c in CLASSES],
                                     dtype=torch.float64, device=device)
            self.weights = per_class[self.classes]

    def batch(self, spec: TrainTonesSpec,
              gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """(x0 patches (B, p^2, M / p, T / p) in about [-1, 1], condition patches
        (B, p^2 C, M / p, T / p)), the pitch labels dropped for ``pitch_dropout`` of the clips and
        every label for ``condition_dropout``."""
        device = self.x0.device
        if self.weights is None:
            idx = torch.randint(len(self.x0), (spec.batch_size,), generator=gen, device=device)
        else:
            idx = torch.multinomial(self.weights, spec.batch_size, replacement=True, generator=gen)
        condition = condition_from_labels(self.classes[idx], self.pitches[idx], self.frames[idx])
        size = spec.batch_size
        keep_pitch = torch.rand(size, generator=gen, device=device) >= spec.pitch_dropout
        keep_all = torch.rand(size, generator=gen, device=device) >= spec.condition_dropout
        condition[:, PITCH_CHANNELS] *= keep_pitch[:, None, None, None]
        condition[:, :LABEL_CHANNELS] *= keep_all[:, None, None, None]
        x0 = self.x0[idx][:, None].clamp(-1, 1)
        return to_patches(x0, self.patch_size), to_patches(condition, self.patch_size)


def _load_stage(unet: torch.nn.Module, folder: Path) -> None:
    """Copy the UNet weights of the tones-tiny ``folder`` into ``unet`` (float32), or raise
    ValueError naming the folder when they do not fit the recipe's architecture."""
    from safetensors.torch import load_file

    path = folder / "unet" / "diffusion_pytorch_model.safetensors"
    if not path.is_file():
        raise FileNotFoundError(f"init_from: no tones-tiny UNet weights at {path}")
    state = {k: v.float() for k, v in load_file(path).items()}
    ours = unet.state_dict()
    if state.keys() != ours.keys() or any(state[k].shape != ours[k].shape for k in ours):
        raise ValueError(f"init_from: the UNet in {folder} does not match the recipe's "
                         "architecture (block_out_channels, layers_per_block, patch_size, "
                         "attention_levels)")
    unet.load_state_dict(state)


def train_tones_generator(spec: TrainTonesSpec, out_dir: str | Path) -> Path:
    """Train ``tones-tiny`` (from scratch, or on from ``spec.init_from``) and save it as a diffusers folder with fp16 safetensors.

    Clips ``0 .. num_clips - 1`` of ``spec.seed`` are rendered once (``render_training_clips``).
    Writes ``out_dir/{model_index.json, unet/, scheduler/, training_log.csv, training.json}``.
    Same spec -> same data and the same initial weights; the optimisation itself is reproducible
    on the same device type.
    """
    out_dir = Path(out_dir)
    watch = Stopwatch()
    device = resolve_device(spec.device)
    torch.manual_seed(spec.seed)
    unet = make_unet(spec.block_out_channels, spec.layers_per_block, spec.patch_size,
                     spec.attention_levels)
    if spec.init_from is not None:
        _load_stage(unet, Path(spec.init_from))
    unet = unet.to(device)
    clips = render_training_clips(spec.seed, spec.num_clips)
    schedule = noise_schedule(spec.prediction_type)
    pipe = TonesTinyPipeline(unet=unet, scheduler=DPMSolverMultistepScheduler.from_config(
        schedule.config), patch_size=spec.patch_size)
    data = _DeviceClips(clips, pipe, spec, device)
    gen = torch.Generator(device=device).manual_seed(spec.seed)
    curve = fit_ddpm(spec, unet.to(memory_format=torch.channels_last), schedule,
                     lambda: data.batch(spec, gen), gen, watch, "train tones-tiny")
    watch.end_training()

    pipe.unet.to("cpu", torch.float16).to(memory_format=torch.contiguous_format)
    pipe.save_pretrained(out_dir, safe_serialization=True)
    atomic_write_text(out_dir / "training_log.csv", curve_csv(curve))
    write_report(out_dir, spec, watch, device,
                 {"final_loss": curve[-1]["loss"], "parameters": parameter_count(unet),
                  "loss_curve": curve},
                 {"pitch_skew": PLANTED_SKEW, "log_mel_centre": pipe.config.log_mel_centre,
                  "log_mel_scale": pipe.config.log_mel_scale})
    return out_dir
