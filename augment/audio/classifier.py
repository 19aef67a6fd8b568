"""The embedded tones classifier: a small CNN on log-mels, trained on real tones-world clips only.

It names what sounds in a window of audio twice, with a class (``LABELS``: "background" = no event,
then the world's event classes) and with a pitch band (``PITCHES``), so generated event clips can
be checked against the condition they were made from without trusting the generator
(``clip_scores``, the verifier), and audio evaluation can read its class probabilities (audio IS,
label consistency, a sliding detector over soundscapes) and its penultimate features (FAD, KID).

Input: 16 kHz float waveforms in [-1, 1], fitted to the classifier's window (``window`` samples,
by default ``CLIP_SAMPLES`` = 2.048 s): shorter inputs are zero-padded at the end (the classifier
is trained on content that ends early and on silence, so an event's own samples or a window cut
from a soundscape are in distribution), longer ones are cropped to their centre ``window`` samples.

Network: ``augment.audio.spectrogram.log_mel`` (64 mels x 129 frames) taken relative to the clip's
peak (``relative_log_mel``: 35 dB of range, gain-invariant), conv3x3-BatchNorm-SiLU
stages that halve mels and frames, the mel axis flattened into channels (so the absolute frequency
that decides the pitch band survives), mean and max pooling over time, a linear + SiLU feature
layer (the penultimate features) and two linear heads. The shipped weights in
``augment/assets/tones-classifier`` are trained by ``augment.audio.training.classifier``.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
from torch import nn

from augment.audio.backends import CLIP_SAMPLES
from augment.audio.mixing import event_samples
from augment.audio.soundscape import Event
from augment.audio.spectrogram import LOG_FLOOR, N_MELS, log_mel
from augment.audio.world import CLASSES, PITCHES, SAMPLE_RATE
from augment.core.modelio import CONFIG_NAME, WEIGHTS_NAME, load_module, save_module

EMBEDDED_CLASSIFIER = Path(__file__).resolve().parents[1] / "assets" / "tones-classifier"
LABELS: tuple[str, ...] = ("background",) + CLASSES
"""Class head's labels: index 0 = background (no event), index k = ``CLASSES[k - 1]``."""

TOP_NATS = 8.0
"""Dynamic range the network sees: log-mel values more than 8 nats (35 dB) below the clip's loudest
bin are raised to that floor."""


def relative_log_mel(log_mels: torch.Tensor, top: float = TOP_NATS) -> torch.Tensor:
    """log-mel (B, M, T) -> (B, M, T) in [-1, 1]: relative to each clip's loudest bin, floored
    ``top`` nats below it (librosa's ``power_to_db(top_db=...)``), so 1 = the peak, -1 = the floor.

    Why: with the absolute floor log(1e-5) an event's onset and offset are steps of 10-20 nats,
    next to which the 1-5 nat dips of an AM tone are invisible to a small CNN (it never learnt to
    tell a beep from an AM tone); relative to the peak, steps and dips are alike, and the clip's
    gain drops out. The reference never sinks below silence + ``top``, so silence stays at -1.
    """
    peak = log_mels.amax(dim=(1, 2), keepdim=True).clamp_min(math.log(LOG_FLOOR) + top)
    return (torch.maximum(log_mels, peak - top) - peak) * (2.0 / top) + 1.0


def _conv_block(c_in: int, c_out: int, stride: int = 1) -> nn.Sequential:
    """conv3x3 -> BatchNorm (Ioffe & Szegedy 2015) -> SiLU; in eval mode BatchNorm uses its
    running statistics, so a prediction depends on its own clip only."""
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False),
                         nn.BatchNorm2d(c_out), nn.SiLU())


class TonesClassifier(nn.Module):
    """CNN on log-mels with a class head, a pitch-band head and penultimate features.

    ``widths[0]`` is the stem's width (stride 2); each further width is a stage of a stride-2 and a
    stride-1 block. ``forward(log_mels (B, N_MELS, T) float32, as ``log_mel`` gives them; taken
    relative to each clip's peak inside)`` returns ``(class_logits (B,
    num_classes), pitch_logits (B, num_pitches), features (B, feature_dim))``; ``window`` is the
    waveform length (samples) ``classify`` fits its input to.
    """

    def __init__(self, widths: tuple[int, ...] = (16, 32, 64, 96), feature_dim: int = 128,
                 window: int = CLIP_SAMPLES, num_classes: int = len(LABELS),
                 num_pitches: int = len(PITCHES)):
        super().__init__()
        bands = N_MELS // 2 ** len(widths)
        if bands < 1:
            raise ValueError(f"widths: {len(widths)} stride-2 levels leave no mel band of {N_MELS}")
        self.config = {"widths": list(widths), "feature_dim": feature_dim, "window": window,
                       "num_classes": num_classes, "num_pitches": num_pitches}
        self.window = window
        self.stem = _conv_block(1, widths[0], stride=2)
        self.stages = nn.Sequential(*(nn.Sequential(_conv_block(a, b, stride=2), _conv_block(b, b))
                                      for a, b in zip(widths[:-1], widths[1:])))
        self.embed = nn.Sequential(nn.Linear(2 * widths[-1] * bands, feature_dim), nn.SiLU())
        self.class_head = nn.Linear(feature_dim, num_classes)
        self.pitch_head = nn.Linear(feature_dim, num_pitches)

    def forward(self, log_mels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        x = self.stem(relative_log_mel(log_mels)[:, None])  # (B, w0, M/2, T/2)
        x = self.stages(x).flatten(1, 2)  # (B, C * bands, T')
        features = self.embed(torch.cat([x.mean(-1), x.amax(-1)], dim=1))  # (B, D)
        return self.class_head(features), self.pitch_head(features), features


def save_classifier(model: TonesClassifier, out_dir: str | Path) -> Path:
    """Write ``out_dir/model.safetensors`` (fp16) and ``out_dir/config.json`` atomically."""
    return save_module(model, model.config, out_dir)


def load_classifier(path: str | Path | None = None,
                    device: str | torch.device = "cpu") -> TonesClassifier:
    """Load a classifier folder (``config.json`` + ``model.safetensors``); None = the embedded one.

    Weights are read with safetensors only and cast to float32; the model is returned in eval mode.
    Raises ``FileNotFoundError`` or ``ValueError`` naming the missing or unusable file.
    """
    folder = Path(path) if path is not None else EMBEDDED_CLASSIFIER
    return load_module(TonesClassifier, folder / CONFIG_NAME, folder / WEIGHTS_NAME,
                       "tones classifier", device)


def fit_to_window(waves: np.ndarray | torch.Tensor, window: int) -> torch.Tensor:
    """float (B, N) -> float32 (B, window): zero-padded at the end, or its centre ``window``
    samples when N > window."""
    waves = torch.as_tensor(waves).float()
    if waves.ndim != 2:
        raise ValueError(f"waves must be (B, N), got shape {tuple(waves.shape)}")
    n = waves.shape[1]
    if n >= window:
        start = (n - window) // 2
        return waves[:, start:start + window]
    return torch.nn.functional.pad(waves, (0, window - n))


@torch.no_grad()
def classify(model: TonesClassifier, waves: np.ndarray | torch.Tensor,
             batch_size: int = 64) -> dict[str, np.ndarray]:
    """Class and pitch-band probabilities and penultimate features of each waveform.

    ``waves``: float (B, N), 16 kHz, in [-1, 1], any N (fitted by ``fit_to_window``). Returns
    float32 numpy arrays: ``class_probs`` (B, len(LABELS)) over ``LABELS``, ``pitch_probs``
    (B, len(PITCHES)) over ``PITCHES`` (meaningless for background), ``features`` (B, D), the
    penultimate layer (after its SiLU). A row with a non-finite sample gives NaN rows. With the
    model in eval mode (as ``load_classifier`` returns it) each row depends on its own waveform
    only, whatever ``batch_size``.
    """
    waves = fit_to_window(waves, model.window)
    device = next(model.parameters()).device
    out = {"class_probs": [torch.zeros(0, len(LABELS))],
           "pitch_probs": [torch.zeros(0, len(PITCHES))],
           "features": [torch.zeros(0, model.config["feature_dim"])]}
    for batch in waves.split(batch_size) if len(waves) else ():
        class_logits, pitch_logits, features = model(log_mel(batch.to(device)))
        out["class_probs"].append(class_logits.softmax(-1).cpu())
        out["pitch_probs"].append(pitch_logits.softmax(-1).cpu())
        out["features"].append(features.cpu())
    return {key: torch.cat(parts).numpy() for key, parts in out.items()}


def event_windows(clips: np.ndarray, events: list[Event], window: int,
                  sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """float32 (E, window): each event's own samples (the first round(duration * sr) of its clip,
    under the mixer's 10 ms ramps, as ``augment.audio.mixing`` adds them), zero-padded."""
    if len(clips) != len(events):
        raise ValueError(f"{len(clips)} clips for {len(events)} events")
    out = np.zeros((len(events), window), dtype=np.float32)
    for row, (clip, event) in enumerate(zip(clips, events)):
        sound = event_samples(clip, event.duration, sample_rate)[:window]
        out[row, :len(sound)] = sound
    return out


def clip_scores(model: TonesClassifier, clips: np.ndarray, events: list[Event]) -> list[dict]:
    """The verifier: score generated event clips against the events they were conditioned on.

    ``clips``: float (E, CLIP_SAMPLES) from a backend, row e holding ``events[e]`` in its first
    round(duration * 16000) samples; only those samples are classified (``event_windows``). Per
    event: ``verify_class`` = P(the event's class), ``class_pred`` (a ``LABELS`` name),
    ``pitch_pred`` (a ``PITCHES`` name), ``pitch_ok`` = ``pitch_pred == event.pitch`` (None when
    the event left its pitch open). A clip with a non-finite sample scores None throughout.
    """
    probs = classify(model, event_windows(np.asarray(clips), events, model.window))
    scores = []
    for event, class_p, pitch_p in zip(events, probs["class_probs"], probs["pitch_probs"]):
        if not np.isfinite(class_p).all():
            scores.append({"verify_class": None, "class_pred": None, "pitch_pred": None,
                           "pitch_ok": None})
            continue
        pitch = PITCHES[int(pitch_p.argmax())]
        scores.append({"verify_class": float(class_p[LABELS.index(event.label)]),
                       "class_pred": LABELS[int(class_p.argmax())], "pitch_pred": pitch,
                       "pitch_ok": None if event.pitch is None else pitch == event.pitch})
    return scores

