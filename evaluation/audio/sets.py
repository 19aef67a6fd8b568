"""Audio sets to evaluate: a synthmill audio dataset (soundscapes and their strong labels) or a plain
folder of .wav / .flac files.

An ``AudioSet`` is an ``evaluation.sets.SampleSet`` whose reader decodes a sound file with
soundfile into float32 mono at the tones world's 16 kHz, and which keeps each soundscape's events
(label, onset, offset in seconds) so event-level metrics can cut event clips and score detections.
"""

from __future__ import annotations

import hashlib
import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np
import pandas as pd
import soundfile as sf
import torch

from augment.audio.dataset import audio_rows, events_of
from augment.audio.world import SAMPLE_RATE
from augment.core.versions import dataset_label
from evaluation.registry import MODALITIES
from evaluation.sets import DecodeError, Reader, SampleSet


def decode_audio(data: bytes) -> torch.Tensor:
    """A sound file's bytes (WAV, FLAC, ...) -> float32 (N,) mono at 16 kHz in [-1, 1].

    Channels are averaged; another rate is resampled with ``torchaudio.functional.resample``
    (windowed sinc). Raises ``DecodeError`` on bytes soundfile cannot read or a file of no samples.
    """
    try:
        wave, rate = sf.read(io.BytesIO(data), dtype="float32", always_2d=True)  # (N, channels)
    except (RuntimeError, ValueError, TypeError, sf.LibsndfileError) as exc:
        raise DecodeError(str(exc)) from exc
    if len(wave) == 0:
        raise DecodeError("no samples")
    mono = torch.from_numpy(wave.mean(axis=1, dtype=np.float32))
    if rate != SAMPLE_RATE:
        import torchaudio  # only for files not at 16 kHz

        mono = torchaudio.functional.resample(mono, rate, SAMPLE_RATE)
    return mono


Events = list[dict]
"""One file's events: dicts with ``label`` (class name), ``onset`` and ``offset`` (seconds)."""


@dataclass
class AudioSet(SampleSet):
    """Sound files of one set and their known labels, in a fixed order.

    ``events`` are per file (onset order), or None where the source does not know them (a plain
    folder); ``classes``: the class names events may carry (the dataset's categories).
    """

    modality: ClassVar[str] = "audio"

    read: Reader = decode_audio
    events: list[Events] | None = None
    classes: list[str] | None = None

    def labels(self) -> dict:
        return {**super().labels(), "events": self.events, "classes": self.classes}

    def events_key(self) -> str:
        """A hash of the events (16 hex digits): part of the cache key of features cut by them."""
        text = json.dumps([self.events, self.classes], sort_keys=True)
        return hashlib.blake2b(text.encode(), digest_size=8).hexdigest()


def open_dataset(root: Path, kept_only: bool) -> AudioSet:
    """A synthmill audio dataset: its generated (or, with ``kept_only``, kept) soundscapes by id,
    their events and captions, grouped by the classes they contain (``class=beep``: soundscapes
    with a beep) and by background (``background=pink``)."""
    info = json.loads((root / "dataset.json").read_text())
    rows = sorted(audio_rows(pd.read_parquet(root / "manifest.parquet"), kept_only=kept_only),
                  key=lambda row: row["id"])
    events = [[{"label": e["category"], "onset": float(e["onset"]), "offset": float(e["offset"])}
               for e in events_of(row)] for row in rows]
    groups: dict[str, list[int]] = {}
    for i, (row, scape) in enumerate(zip(rows, events)):
        for name in sorted({e["label"] for e in scape}):
            groups.setdefault(f"class={name}", []).append(i)
        background = json.loads(row["layout"]).get("background") if row.get("layout") else None
        if background:
            groups.setdefault(f"background={background}", []).append(i)
    return AudioSet(dataset_label(root), root, [root / row["audio"] for row in rows], "synthmill",
                    captions=[row["caption"] for row in rows], groups=dict(sorted(groups.items())),
                    events=events, classes=list(info.get("categories", [])))


def open_path(path: Path, samples_dir: Path | None) -> AudioSet | None:
    """A folder of sound files (searched recursively; no labels); None when ``path`` is not a
    folder holding any."""
    if not path.is_dir():
        return None
    suffixes = MODALITIES.get(AudioSet.modality).suffixes
    files = sorted(p for p in path.rglob("*") if p.suffix.lower() in suffixes)
    return AudioSet(path.name, path, files, "folder") if files else None
