"""Pictures of audio datasets for the report: log-mel spectrogram grids per class with the event
boxes drawn on them, event statistics (polyphony, durations, SNRs), the class balance, and inline
players of a few events per class.

Spectrograms are ``augment.audio.spectrogram.log_mel`` (64 Slaney mel bands, 50 Hz - 8 kHz, hop
16 ms), the representation the tones classifier and generator work on, shown over the top 10 nats
(43 dB) of each soundscape. Frame t is centred at t * 256 / 16000 s, so an event from onset to
offset covers x in [onset, offset] on the time axis.
"""

from __future__ import annotations

import io
import json
import logging
from collections import Counter
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
import soundfile as sf
import torch
import torchaudio
from matplotlib import colormaps, patheffects
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle
from PIL import Image

from augment.audio.dataset import SampleReadError, audio_rows, events_of
from augment.audio.soundscape import Soundscape
from augment.audio.spectrogram import F_MAX, F_MIN, HOP, N_FFT, N_MELS, log_mel
from augment.audio.world import CLASSES, PITCH_BANDS, SAMPLE_RATE
from augment.config.audio import SoundscapeSpec
from evaluation.plots import (Picture, class_balance, class_rows_figure, figure_png,
                             plain_text, rows_per_class)

log = logging.getLogger(__name__)

RANGE_NATS = 10.0
"""Dynamic range shown: log-mel values more than 10 nats (43 dB) below the peak are black."""
PLAYERS_PER_CLASS = 2
CONTEXT_SECONDS = 0.25
"""Audio kept before and after an event in its player."""

_CMAP = "magma"
_HIGHLIGHT = "#ffd400"  # the row's class; over a black stroke, so it reads on any colour
_STROKE = [patheffects.withStroke(linewidth=2.2, foreground="black")]


# -- spectrograms -------------------------------------------------------------------------------

def spectrogram(wave: np.ndarray) -> np.ndarray:
    """float waveform (N,) at 16 kHz -> log-mel (N_MELS, N // HOP + 1) float32, natural log of
    power; row 0 is the lowest band."""
    return log_mel(torch.as_tensor(np.asarray(wave, dtype=np.float32))[None])[0].numpy()


@lru_cache(maxsize=1)
def _band_centres() -> np.ndarray:
    """(N_MELS,) centre frequency (Hz) of each mel band: the centroid of its filter."""
    fb = torchaudio.functional.melscale_fbanks(N_FFT // 2 + 1, F_MIN, F_MAX, N_MELS, SAMPLE_RATE,
                                               norm="slaney", mel_scale="slaney").numpy()
    hz = np.linspace(0, SAMPLE_RATE / 2, N_FFT // 2 + 1)
    return (fb * hz[:, None]).sum(0) / fb.sum(0)


def mel_row(hz: float) -> float:
    """The (fractional) spectrogram row of a frequency; bands below/above clamp to the edges."""
    return float(np.interp(hz, _band_centres(), np.arange(N_MELS)))


def event_box(event: dict) -> tuple[float, float, float, float]:
    """(x0, y0, width, height) of an event on a spectrogram axes: x in seconds from onset to
    offset; y in mel rows over the pitch band its fundamental lies in, or the whole height when
    its band is unknown."""
    if event.get("pitch") in PITCH_BANDS:
        lo, hi = PITCH_BANDS[event["pitch"]]
        y0, y1 = mel_row(lo), mel_row(hi)
    else:
        y0, y1 = -0.5, N_MELS - 0.5
    return event["onset"], y0, event["offset"] - event["onset"], y1 - y0


def _draw_soundscape(ax, root: Path, row: dict, highlight: str) -> None:
    """Log-mel of a soundscape with a box per event; the highlighted class in bold yellow, others
    thin white. Each box's gid is "<audio file>:<event index>"."""
    wave = _read_pcm(root, row).astype(np.float32) / 32768.0
    mel = spectrogram(wave)  # (M, T)
    frame = HOP / SAMPLE_RATE
    ax.imshow(mel, origin="lower", aspect="auto", cmap=_CMAP, vmax=mel.max(),
              vmin=mel.max() - RANGE_NATS, interpolation="nearest",
              extent=(-frame / 2, (mel.shape[1] - 0.5) * frame, -0.5, N_MELS - 0.5))
    for k, event in enumerate(events_of(row)):
        mine = event["category"] == highlight
        colour, width = (_HIGHLIGHT, 1.2) if mine else ("white", 0.6)
        x0, y0, w, h = event_box(event)
        ax.add_patch(Rectangle((x0, y0), w, h, fill=False, edgecolor=colour, linewidth=width,
                               path_effects=_STROKE if mine else [], gid=f"{row['audio']}:{k}"))


def spectrogram_figure(dataset_dir: str | Path, per_class: int = 4,
                       classes: Sequence[str] | None = None) -> Figure:
    """The figure ``spectrogram_grid`` draws (for tests to look inside)."""
    root = Path(dataset_dir)
    return class_rows_figure(grid_soundscapes(root, per_class, classes), per_class,
                             lambda ax, row, name: _draw_soundscape(ax, root, row, name),
                             (SampleReadError, ValueError), cell=(2.2, 1.3),
                             empty="no kept soundscape")


def spectrogram_grid(dataset_dir: str | Path, per_class: int = 4,
                     classes: Sequence[str] | None = None) -> bytes:
    """PNG of kept soundscapes' log-mels, one row per class (``grid_soundscapes``), the class name
    as row label; each event boxed from onset to offset over its pitch band (the whole height when
    unknown), the row's class in yellow. An unreadable file shows as an "unreadable" cell."""
    return figure_png(spectrogram_figure(dataset_dir, per_class, classes))


def grid_soundscapes(dataset_dir: str | Path, per_class: int = 4,
                     classes: Sequence[str] | None = None) -> dict[str, list[dict]]:
    """The kept manifest rows the grid shows: per class, the first ``per_class`` soundscapes (by
    id) holding an event of it. ``classes`` defaults to the classes the job asked for."""
    root = Path(dataset_dir)
    return rows_per_class(audio_rows(pd.read_parquet(root / "manifest.parquet")), classes,
                          per_class, _soundscape_spec(root).classes, root)


def spectrogram_png(path: str | Path, size: int = 128) -> bytes:
    """One WAV file's log-mel as PNG bytes (low frequencies at the bottom), its longer side scaled
    to ``size``: the audio twin of ``evaluation.image.pictures.image_png``, for report sections
    such as memorization pairs. Raises ``SampleReadError`` naming an unreadable file."""
    try:
        wave, rate = sf.read(path, dtype="float32", always_2d=True)
    except (OSError, RuntimeError, sf.LibsndfileError) as exc:
        raise SampleReadError(f"cannot read audio file {path}: {exc}") from exc
    if rate != SAMPLE_RATE:
        wave = torchaudio.functional.resample(torch.from_numpy(wave.T), rate, SAMPLE_RATE).T.numpy()
    return _spectrogram_image(spectrogram(wave.mean(1)), size)


def _spectrogram_image(mel: np.ndarray, size: int) -> bytes:
    """log-mel (M, T) -> PNG, colour-mapped over its top ``RANGE_NATS``, longer side ``size``."""
    scaled = np.clip((mel - mel.max()) / RANGE_NATS + 1.0, 0.0, 1.0)[::-1]  # top row = high
    rgb = (colormaps[_CMAP](scaled)[..., :3] * 255).astype(np.uint8)  # (M, T, 3)
    image = Image.fromarray(rgb)
    scale = size / max(image.size)
    image = image.resize((max(1, round(image.width * scale)), max(1, round(image.height * scale))),
                         Image.BILINEAR)
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


# -- players ------------------------------------------------------------------------------------

def _read_pcm(root: Path, row: dict) -> np.ndarray:
    """The soundscape's samples as stored: int16 (N,)."""
    path = root / row["audio"]
    try:
        return sf.read(path, dtype="int16", always_2d=False)[0]
    except (OSError, RuntimeError, sf.LibsndfileError) as exc:
        raise SampleReadError(f"sample {row['id']}: cannot read audio file {path}: {exc}") from exc


def excerpt_bounds(event: dict, num_samples: int,
                   context: float = CONTEXT_SECONDS) -> tuple[int, int]:
    """[start, stop) samples of an event's player: onset - context to offset + context, inside the
    file."""
    start = max(0, int(round((event["onset"] - context) * SAMPLE_RATE)))
    return start, min(num_samples, int(round((event["offset"] + context) * SAMPLE_RATE)))


def event_players(dataset_dir: str | Path, per_class: int = PLAYERS_PER_CLASS) -> list[Picture]:
    """A player per event for the first ``per_class`` kept soundscapes of each class: the event
    with ``CONTEXT_SECONDS`` either side, as a 16-bit PCM WAV of the file's own samples (no
    re-encoding loss), with its spectrogram as the picture."""
    root = Path(dataset_dir)
    players = []
    for name, rows in grid_soundscapes(root, per_class).items():
        for row in rows:
            try:
                pcm = _read_pcm(root, row)
            except SampleReadError as exc:
                log.warning("players of %s: %s", root, exc)
                continue
            event = next(e for e in events_of(row) if e["category"] == name)
            start, stop = excerpt_bounds(event, len(pcm))
            wav = io.BytesIO()
            sf.write(wav, pcm[start:stop], SAMPLE_RATE, subtype="PCM_16", format="WAV")
            pitch = f" ({event['pitch']})" if event.get("pitch") else ""
            players.append(Picture(
                _spectrogram_image(spectrogram(pcm[start:stop] / 32768.0), 160),
                f"{name}{pitch}: #{row['id']} {row['audio']} {start / SAMPLE_RATE:.2f}-"
                f"{stop / SAMPLE_RATE:.2f} s", audio=wav.getvalue()))
    return players


# -- event statistics ---------------------------------------------------------------------------

@dataclass
class EventStats:
    """Events of a dataset's kept soundscapes: ``polyphony`` (L,) share of the soundscapes' total
    time during which k = 0..L-1 events sound at once; per class ``durations`` and ``snr_db``
    (seconds, dB; in id then onset order); ``kept`` / ``dropped`` events per class (in kept
    soundscapes / in soundscapes verification dropped); ``soundscapes``: kept ones."""

    polyphony: np.ndarray
    durations: dict[str, np.ndarray]
    snr_db: dict[str, np.ndarray]
    kept: Counter
    dropped: Counter
    soundscapes: int


def polyphony_time(intervals: Sequence[tuple[float, float]], duration: float) -> np.ndarray:
    """(L,) seconds of [0, duration] during which k = 0..L-1 of ``intervals`` (onset, offset in
    seconds) sound at once, exactly (a sweep over the interval ends; an event ending where another
    starts does not overlap it); sums to ``duration``, L - 1 = the most at once."""
    ends = sorted([(max(0.0, a), 1) for a, _ in intervals]
                  + [(min(duration, b), -1) for _, b in intervals])
    time = np.zeros(len(intervals) + 1)
    level, last = 0, 0.0
    for t, step in ends:
        time[level] += t - last
        level, last = level + step, t
    time[0] += duration - last
    return time[:1 + max(np.flatnonzero(time), default=0)]


def _sum_padded(arrays: list[np.ndarray]) -> np.ndarray:
    width = max((len(a) for a in arrays), default=1)
    return sum((np.pad(a, (0, width - len(a))) for a in arrays), np.zeros(width))


def event_statistics(dataset_dir: str | Path) -> EventStats:
    """Polyphony, durations, SNRs and counts of a dataset's events (``EventStats``; classes in the
    world's order), from its manifest."""
    manifest = pd.read_parquet(Path(dataset_dir) / "manifest.parquet")
    kept_rows = audio_rows(manifest)
    durations: dict[str, list[float]] = {}
    snrs: dict[str, list[float]] = {}
    time, total = [], 0.0
    for row in kept_rows:
        events = events_of(row)
        duration = Soundscape.from_json(row["layout"]).duration
        time.append(polyphony_time([(e["onset"], e["offset"]) for e in events], duration))
        total += duration
        for e in events:
            durations.setdefault(e["category"], []).append(e["offset"] - e["onset"])
            snrs.setdefault(e["category"], []).append(e["snr_db"])
    dropped = Counter(e["category"] for row in audio_rows(manifest, kept_only=False)
                      if not row["kept"] for e in events_of(row))
    order = [c for c in CLASSES if c in durations]
    return EventStats(_sum_padded(time) / max(total, 1e-12),
                      {c: np.array(durations[c]) for c in order},
                      {c: np.array(snrs[c]) for c in order},
                      Counter({c: len(durations[c]) for c in order}), dropped, len(kept_rows))


def event_statistics_png(stats: EventStats) -> bytes:
    """PNG of three panels: polyphony (share of time per number of overlapping events), event
    durations per class and SNRs per class (box plots: median, quartiles, 1.5 IQR whiskers)."""
    names = list(stats.durations)
    fig = Figure(figsize=(max(9.0, 1.2 * len(names) + 6.0), 3.0))
    poly, dur, snr = fig.subplots(1, 3, gridspec_kw={"width_ratios": [1, 2, 2]})
    levels = np.arange(len(stats.polyphony))
    poly.bar(levels, stats.polyphony, 0.7, color="C0")
    poly.set_xticks(levels)
    poly.set_xlabel("events sounding at once")
    poly.set_ylabel("share of time")
    poly.set_title(f"polyphony ({stats.soundscapes} soundscapes)", fontsize=10)
    for ax, values, unit, title in ((dur, stats.durations, "seconds", "event duration"),
                                    (snr, stats.snr_db, "dB", "SNR over the background")):
        if names:
            ax.boxplot([values[n] for n in names], widths=0.6)
            ax.set_xticks(np.arange(1, len(names) + 1),
                          [f"{plain_text(n)}\n(n={len(values[n])})" for n in names],
                          rotation=20 if len(names) > 4 else 0, fontsize=7)
        ax.set_ylabel(unit)
        ax.set_title(title, fontsize=10)
    for ax in (poly, dur, snr):
        ax.spines[["top", "right"]].set_visible(False)
    fig.subplots_adjust(wspace=0.35)
    return figure_png(fig)


# -- the dataset's part of the report -----------------------------------------------------------

def _soundscape_spec(root: Path) -> SoundscapeSpec:
    info = json.loads((root / "dataset.json").read_text())
    return SoundscapeSpec.model_validate(info["config"]["soundscape"])


def dataset_pictures(root: Path, per_class: int) -> tuple[list[Picture], pd.DataFrame | None]:
    """The report's pictures of a synthmill audio dataset: a spectrogram grid of ``per_class``
    kept soundscapes per class (none when 0), the event statistics, the class balance, and
    players of up to ``PLAYERS_PER_CLASS`` events per class (``Picture.audio``); and the id,
    split and caption of the soundscapes the grid shows."""
    root = Path(root)
    pictures, shown = [], None
    if per_class > 0:
        pictures.append(Picture(spectrogram_grid(root, per_class),
                                "kept soundscapes per class (log-mel, 50 Hz - 8 kHz); each event "
                                "boxed from onset to offset over its pitch band (whole height when "
                                "unknown), the row's class in yellow"))
        rows = {r["id"]: r for picked in grid_soundscapes(root, per_class).values() for r in picked}
        shown = pd.DataFrame([rows[i] for i in sorted(rows)], columns=["id", "split", "caption"])
    stats = event_statistics(root)
    pictures.append(Picture(event_statistics_png(stats),
                            f"events of the {stats.soundscapes} kept soundscapes: time share per "
                            "number of overlapping events, durations and SNRs per class"))
    pictures.append(Picture(class_balance(stats.kept, _soundscape_spec(root).class_probabilities(),
                                          stats.dropped),
                            "share of events per class in kept soundscapes vs the requested "
                            "frequencies; events in dropped soundscapes"))
    if per_class > 0:
        pictures += event_players(root, min(per_class, PLAYERS_PER_CLASS))
    return pictures, shown
