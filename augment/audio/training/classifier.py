"""Training and held-out evaluation of the embedded tones classifier (``augment.audio.classifier``).

The classifier learns from real tones-world clips only, never from generated ones, so it shares no
weights and no data with the generator it checks. A training clip is a window of ``CLIP_SAMPLES``
holding one event (any class, pitch band, frequency, duration 0.2-2 s, anywhere in the window) or
only a background (class "background"); some events are mixed over a background at a random SNR;
the whole clip gets a random gain; some clips end early (a window cut from a soundscape, its event
possibly cut at the window's edges, zero-padded after); and a share is round-tripped through
log-mel and Griffin-Lim (Griffin & Lim 1984), so that the vocoded clips of the ``tones-tiny``
generator are in distribution.

Clip ``i`` of a seed is drawn from ``(seed, i)`` alone (``draw_clip``, a record of every value
drawn, as Scaper records an event) and rendered from that record (``render_clip``), so it is the
same clip whichever worker renders it, and any clip regenerates alone.
"""

from __future__ import annotations

import logging
import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from augment.audio.backends import CLIP_SAMPLES
from augment.audio.classifier import (LABELS, TonesClassifier, classify, load_classifier,
                                      save_classifier)
from augment.audio.spectrogram import griffin_lim, log_mel
from augment.audio.world import (BACKGROUNDS, CLASSES, DURATION_RANGE, PITCHES, SAMPLE_RATE,
                                 db_to_gain, render_background, render_event, sample_frequency)
from augment.config.training import TrainTonesClassifierSpec
from augment.core.devices import resolve_device
from augment.core.seeds import child_seed, sample_seeds
from augment.core.training import (Optimisation, Stats, Stopwatch, adamw_one_cycle, parameter_count,
                                   train_loop, write_report)

log = logging.getLogger(__name__)

NO_PITCH = -100
"""Pitch target of a background clip: ignored by the pitch loss and accuracy."""
MIN_VISIBLE = int(round(DURATION_RANGE[0] * SAMPLE_RATE))
"""Fewest samples of content in a window, and of an event cut by a window's edges (0.2 s)."""

HELD_OUT_SETTINGS: dict[str, dict] = {
    "clean": {"background_share": 0.0, "mixed_share": 0.0, "griffin_lim_share": 0.0,
              "window_share": 0.0, "start_share": 1.0},
    "backgrounds": {"mixed_share": 1.0, "griffin_lim_share": 0.0},
    "griffin_lim": {"background_share": 0.0, "mixed_share": 0.0, "griffin_lim_share": 1.0,
                    "window_share": 0.0, "start_share": 1.0},
}
"""Held-out clip distributions (overrides of the recipe): ``clean``, whole events alone at the
start of the window, as the verifier sees a clip's own samples; ``backgrounds``, every event over a
background (and the recipe's share of background-only clips and of windows); ``griffin_lim``, the
clean clips round-tripped through Griffin-Lim, as the generator's clips are vocoded."""


@dataclass(frozen=True)
class ClipDraw:
    """Every value drawn for one clip of ``window`` samples.

    ``label`` is a ``LABELS`` name; ``pitch``, ``frequency`` (Hz) and ``samples`` describe the
    event (pitch and frequency None for a background clip); ``onset`` is the event's first sample in
    the window (negative when the window cuts its start); ``content`` the samples before the zero
    padding; ``background`` the background kind (None: silence); ``snr_db`` the event's RMS over
    the background's; ``gain_db`` the clip's gain; ``griffin_lim_iters`` the round trip's
    iterations (0: none); ``seed`` the event's texture seed, whose ``child_seed`` 1 and 2 draw the
    background's texture and the Griffin-Lim phase.
    """

    label: str
    pitch: str | None
    frequency: float | None
    samples: int
    onset: int
    content: int
    background: str | None
    snr_db: float
    gain_db: float
    griffin_lim_iters: int
    seed: int


def _onset(u: float, start: bool, short: bool, samples: int, content: int) -> int:
    """The event's first sample, from a uniform ``u`` in [0, 1): in a short window anywhere that
    leaves at least half the event (or 0.2 s) inside the content; else inside the window (at 0
    when ``start``)."""
    if short:
        visible = min(samples, content, max(MIN_VISIBLE, samples // 2))
        low, high = visible - samples, content - visible
    else:
        low, high = 0, 0 if start else content - samples
    return low + int(u * (high - low + 1))


def draw_clip(spec: TrainTonesClassifierSpec, seed: int, index: int,
              window: int = CLIP_SAMPLES) -> ClipDraw:
    """Draw clip ``index`` of ``seed`` from the recipe's clip distribution (deterministic).

    The same random numbers are drawn whatever the recipe, so clip ``index`` keeps its class,
    pitch, duration and textures across the ``HELD_OUT_SETTINGS``; the recipe only maps them.
    """
    rng = np.random.default_rng(sample_seeds(seed, index)[0])
    u_background, u_window, u_content, u_start, u_onset, u_mixed, u_trip, u_iters = rng.random(8)
    event_class = str(CLASSES[rng.integers(len(CLASSES))])
    pitch = str(PITCHES[rng.integers(len(PITCHES))])
    frequency = sample_frequency(pitch, rng)
    samples = int(rng.integers(MIN_VISIBLE, int(round(DURATION_RANGE[1] * SAMPLE_RATE)) + 1))
    background, texture = str(BACKGROUNDS[rng.integers(len(BACKGROUNDS))]), int(rng.integers(2**31))
    snr_u, gain_u = rng.random(2)

    is_background, short = u_background < spec.background_share, u_window < spec.window_share
    content = MIN_VISIBLE + int(u_content * (window - MIN_VISIBLE + 1)) if short else window
    low, high = spec.griffin_lim_iters
    return ClipDraw(
        label="background" if is_background else event_class,
        pitch=None if is_background else pitch, frequency=None if is_background else frequency,
        samples=samples, onset=_onset(u_onset, u_start < spec.start_share, short, samples, content),
        content=content,
        background=background if is_background or u_mixed < spec.mixed_share else None,
        snr_db=float(spec.snr_db[0] + snr_u * (spec.snr_db[1] - spec.snr_db[0])),
        gain_db=float(spec.gain_db[0] + gain_u * (spec.gain_db[1] - spec.gain_db[0])),
        griffin_lim_iters=low + int(u_iters * (high - low + 1)) if u_trip < spec.griffin_lim_share
        else 0,
        seed=texture)


def render_clip(draw: ClipDraw, window: int = CLIP_SAMPLES) -> np.ndarray:
    """The clip of a ``ClipDraw``: float32 (window,) in [-1, 1].

    Event and background are rendered at -20 dBFS RMS; the background is lowered by ``snr_db``
    under an event; the sum gets ``gain_db`` and is clipped to full scale, then optionally
    round-tripped through ``log_mel`` and ``griffin_lim``.
    """
    out = np.zeros(window, dtype=np.float64)
    is_event = draw.label != "background"
    if draw.background is not None:
        level = db_to_gain(-draw.snr_db) if is_event else 1.0
        out[:draw.content] = level * render_background(draw.background, draw.content / SAMPLE_RATE,
                                                       child_seed(draw.seed, 1))
    if is_event:
        sound = render_event(draw.label, draw.frequency, draw.samples / SAMPLE_RATE, draw.seed)
        first, last = max(draw.onset, 0), min(draw.onset + draw.samples, draw.content)
        out[first:last] += sound[first - draw.onset:last - draw.onset]
    out = np.clip(out * db_to_gain(draw.gain_db), -1.0, 1.0).astype(np.float32)
    if draw.griffin_lim_iters:
        wave = torch.from_numpy(out)[None]
        phase_seed = child_seed(draw.seed, 2)
        out = griffin_lim(log_mel(wave), window, draw.griffin_lim_iters, phase_seed)[0]
        out = out.clamp(-1.0, 1.0).numpy()
    return out


@dataclass
class ClipArrays:
    """N clips: ``x`` float32 waveforms (N, window) or float16 log-mels (N, N_MELS, frames);
    ``labels`` (N,) int64 ``LABELS`` index; ``pitches`` (N,) int64 ``PITCHES`` index, ``NO_PITCH``
    for background clips."""

    x: np.ndarray
    labels: np.ndarray
    pitches: np.ndarray

    def __len__(self) -> int:
        return len(self.labels)


def render_clips(spec: TrainTonesClassifierSpec, seed: int, start: int, count: int) -> ClipArrays:
    """Clips ``start .. start+count-1`` of ``seed`` as waveforms, float32 (count, CLIP_SAMPLES)."""
    draws = [draw_clip(spec, seed, i) for i in range(start, start + count)]
    waves = (np.stack([render_clip(d) for d in draws]) if draws
             else np.zeros((0, CLIP_SAMPLES), np.float32))
    return ClipArrays(waves, np.array([LABELS.index(d.label) for d in draws], dtype=np.int64),
                      np.array([NO_PITCH if d.pitch is None else PITCHES.index(d.pitch)
                                for d in draws], dtype=np.int64))


def render_log_mels(spec: TrainTonesClassifierSpec, seed: int, start: int,
                    count: int) -> ClipArrays:
    """``render_clips`` as float16 log-mels (count, N_MELS, frames): a quarter of the memory."""
    clips = render_clips(spec, seed, start, count)
    parts = np.array_split(clips.x, max(1, count // 64))  # batches of about 64 clips
    mels = torch.cat([log_mel(torch.from_numpy(part)) for part in parts])
    return ClipArrays(mels.half().numpy(), clips.labels, clips.pitches)


def _single_threaded() -> None:
    """Pool initialiser: one torch thread per worker process, so workers do not oversubscribe."""
    torch.set_num_threads(1)


def render_parallel(render: Callable[..., ClipArrays], spec: TrainTonesClassifierSpec, seed: int,
                    count: int, workers: int | None = None, chunk: int = 500) -> ClipArrays:
    """``render(spec, seed, 0, count)`` (``render_clips`` or ``render_log_mels``) split into chunks
    over ``workers`` processes (None = one per CPU); the same clips whatever the number. Call it
    before CUDA is initialised: the worker processes are forked."""
    chunks = [(start, min(chunk, count - start)) for start in range(0, count, chunk)]
    job = partial(render, spec, seed)
    if (workers or os.cpu_count() or 1) == 1 or len(chunks) == 1:
        parts = [job(*c) for c in chunks]
    else:
        with ProcessPoolExecutor(workers, initializer=_single_threaded) as pool:
            parts = list(pool.map(job, *zip(*chunks)))
    return ClipArrays(*(np.concatenate([getattr(p, f) for p in parts])
                        for f in ("x", "labels", "pitches")))


def accuracy_figures(class_probs: np.ndarray, pitch_probs: np.ndarray, clips: ClipArrays) -> dict:
    """Class accuracy (all clips), pitch accuracy (event clips) and per-label class accuracy."""
    class_pred, pitch_pred = class_probs.argmax(1), pitch_probs.argmax(1)
    events = clips.pitches != NO_PITCH
    per_label = {name: round(float((class_pred[clips.labels == k] == k).mean()), 5)
                 for k, name in enumerate(LABELS) if (clips.labels == k).any()}
    return {"class_accuracy": float((class_pred == clips.labels).mean()),
            "pitch_accuracy": float((pitch_pred[events] == clips.pitches[events]).mean())
            if events.any() else None,
            "per_class_accuracy": per_label, "num_clips": len(clips),
            "num_event_clips": int(events.sum())}


def evaluate_classifier(model: TonesClassifier, spec: TrainTonesClassifierSpec, seed: int,
                        count: int, setting: dict | None = None,
                        workers: int | None = None) -> dict:
    """Held-out figures on clips ``0 .. count-1`` of ``seed`` drawn from the recipe with
    ``setting``'s overrides (one of ``HELD_OUT_SETTINGS``), classified from their waveforms."""
    setting = setting or {}
    clips = render_parallel(render_clips, spec.model_copy(update=setting), seed, count, workers)
    probs = classify(model, clips.x)
    return {**accuracy_figures(probs["class_probs"], probs["pitch_probs"], clips), "seed": seed,
            "setting": setting}


def _fit(spec: TrainTonesClassifierSpec, clips: ClipArrays,
         device: torch.device) -> tuple[TonesClassifier, list]:
    """Train a fresh classifier on pre-rendered log-mels; returns it (fp32, eval mode) and its loss
    curve. Loss: cross-entropy of the class head plus cross-entropy of the pitch head over the
    batch's event clips; AdamW with a one-cycle schedule; batches drawn with replacement."""
    mels = torch.from_numpy(clips.x).to(device)  # (N, N_MELS, T) float16
    labels, pitches = (torch.from_numpy(a).to(device) for a in (clips.labels, clips.pitches))
    torch.manual_seed(spec.seed)
    model = TonesClassifier(spec.widths, spec.feature_dim).to(device)
    gen = torch.Generator(device=device).manual_seed(spec.seed)

    def draw() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        idx = torch.randint(len(mels), (spec.batch_size,), generator=gen, device=device)
        return mels[idx].float(), labels[idx], pitches[idx]

    def loss(batch: tuple[torch.Tensor, torch.Tensor, torch.Tensor]) -> Stats:
        x, y_class, y_pitch = batch
        class_logits, pitch_logits, _ = model(x)
        class_loss = F.cross_entropy(class_logits, y_class)
        # a mean over the event clips only; a batch of backgrounds alone has no pitch loss
        pitch_sum = F.cross_entropy(pitch_logits, y_pitch, ignore_index=NO_PITCH, reduction="sum")
        pitch_loss = pitch_sum / (y_pitch != NO_PITCH).sum().clamp_min(1)
        return {"loss": class_loss + pitch_loss, "class_loss": class_loss, "pitch_loss": pitch_loss}

    optimisation = Optimisation(*adamw_one_cycle(model.parameters(), spec.learning_rate,
                                                 spec.steps))
    curve = train_loop(draw, loss, optimisation, spec.steps, spec.log_every,
                       "train tones classifier")
    return model.eval(), curve


def train_tones_classifier(spec: TrainTonesClassifierSpec, out_dir: str | Path,
                           workers: int | None = None) -> dict:
    """Train a ``TonesClassifier`` on real clips and save it with its held-out figures.

    Clips ``0 .. num_clips-1`` of ``spec.seed`` are rendered once as log-mels (``workers``
    processes; None = one per CPU); held-out figures come from ``eval_clips`` clips of seed
    ``seed + 1`` per ``HELD_OUT_SETTINGS`` entry, computed on the weights as shipped (fp16).
    Writes ``out_dir/{model.safetensors, config.json, training.json}`` and returns training.json's
    dict. Same spec -> same clips, initial weights and batches.
    """
    watch = Stopwatch()
    log.info("rendering %d training clips", spec.num_clips)
    clips = render_parallel(render_log_mels, spec, spec.seed, spec.num_clips, workers)
    log.info("rendered %d clips in %.1fs", spec.num_clips, watch.seconds())
    device = resolve_device(spec.device)
    model, curve = _fit(spec, clips, device)
    watch.end_training()

    out_dir = save_classifier(model, out_dir)
    shipped = load_classifier(out_dir, device)
    held_out = {name: evaluate_classifier(shipped, spec, spec.seed + 1, spec.eval_clips, setting,
                                          workers) for name, setting in HELD_OUT_SETTINGS.items()}
    report = write_report(out_dir, spec, watch, device,
                          {"parameters": parameter_count(model), "held_out": held_out,
                           "loss_curve": curve},
                          {"window": CLIP_SAMPLES, "event_duration": list(DURATION_RANGE),
                           "backgrounds": list(BACKGROUNDS)})
    log.info("held-out: %s", {name: (figures["class_accuracy"], figures["pitch_accuracy"])
                              for name, figures in held_out.items()})
    return report
