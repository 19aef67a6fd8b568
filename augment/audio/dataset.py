"""Read an audio synthmill dataset folder: the torch ``Dataset`` for sound event detection, and the
readers the audio writers share with it.

Example::

    ds = AudioDataset("datasets/demo-tones", split="train")
    dl = DataLoader(ds, batch_size=8, collate_fn=AudioDataset.collate_fn)
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
import soundfile as sf
import torch

from augment.core.manifest import exported_rows
from augment.core.versions import resolve_dataset

MANIFEST_COLUMNS = ("id", "audio", "frames", "split", "caption", "layout", "instances", "kept",
                    "status")


class SampleReadError(OSError):
    """A sample's audio or frame file is missing, unreadable or inconsistent; names file and id."""


def audio_rows(manifest: pd.DataFrame, split: str | None = None, kept_only: bool = True) -> list[dict]:
    """The audio manifest's rows to read or export (``augment.core.manifest.exported_rows``)."""
    return exported_rows(manifest, MANIFEST_COLUMNS, split, kept_only)


def read_audio(root: Path, row: dict) -> tuple[np.ndarray, int]:
    """(float32 waveform (N,) in [-1, 1], sample rate) of a sample."""
    path = root / row["audio"]
    try:
        wave, rate = sf.read(path, dtype="float32", always_2d=False)
    except (OSError, RuntimeError, sf.LibsndfileError) as exc:
        raise SampleReadError(f"sample {row['id']}: cannot read audio file {path}: {exc}") from exc
    return wave, rate


def read_frames(root: Path, row: dict) -> np.ndarray:
    """(frames, K) uint8 activity map of a sample."""
    path = root / row["frames"]
    try:
        return np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise SampleReadError(f"sample {row['id']}: cannot read frame file {path}: {exc}") from exc


def events_of(row: dict) -> list[dict]:
    """The sample's events (manifest per-event records), in onset order."""
    return json.loads(row["instances"])


class AudioDataset(torch.utils.data.Dataset):
    """Waveforms, strong labels and frame targets of an audio synthmill dataset.

    Each item is a dict:
      - ``waveform``: float32 (1, N) in [-1, 1]; ``sample_rate``: int
      - ``events``: float32 (E, 2) onset and offset in seconds; ``labels``: int64 (E,) category ids
        (``classes[label - 1]`` is the name)
      - ``frames``: float32 (T, K) activity of each class per frame (hop ``frame_hop`` seconds)
      - ``id``: int, ``caption``: str, ``attributes``: E dicts (pitch, pitch_source, snr_db, ...)

    ``split`` is "train", "val" or None (all); ``kept_only=False`` adds soundscapes that
    verification rejected (failed ones never appear); ``transform`` is called on the whole dict.
    """

    def __init__(self, root: str | Path, split: str | None = None, kept_only: bool = True,
                 transform: Callable[[dict], dict] | None = None):
        self.root = resolve_dataset(root)
        info_path = self.root / "dataset.json"
        try:
            info = json.loads(info_path.read_text())
            self._classes = list(info["categories"])
            self.frame_hop = float(info["config"]["soundscape"]["frame_hop"])
        except (OSError, ValueError, KeyError) as exc:
            raise ValueError(f"{info_path}: not an audio dataset description ({exc!r})") from exc
        manifest_path = self.root / "manifest.parquet"
        try:
            manifest = pd.read_parquet(manifest_path)
        except (OSError, ValueError) as exc:
            raise ValueError(f"{manifest_path}: cannot read the manifest ({exc})") from exc
        self.rows = audio_rows(manifest, split=split, kept_only=kept_only)
        self.transform = transform

    @property
    def classes(self) -> list[str]:
        """Category names; category id ``i + 1`` is ``classes[i]``."""
        return list(self._classes)

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index: int) -> dict:
        row = self.rows[index]
        wave, rate = read_audio(self.root, row)
        events = events_of(row)
        sample = {
            "waveform": torch.from_numpy(wave)[None],
            "sample_rate": rate,
            "events": torch.tensor([[e["onset"], e["offset"]] for e in events],
                                   dtype=torch.float32).reshape(-1, 2),
            "labels": torch.tensor([e["category_id"] for e in events], dtype=torch.int64),
            "frames": torch.from_numpy(read_frames(self.root, row).astype(np.float32)),
            "id": int(row["id"]),
            "caption": row["caption"],
            "attributes": [{k: e.get(k) for k in ("pitch", "pitch_source", "snr_db")}
                           for e in events],
        }
        return self.transform(sample) if self.transform else sample

    @staticmethod
    def collate_fn(batch: list[dict]) -> dict:
        """Stack ``waveform`` (B, 1, N), ``frames`` (B, T, K) and ``id``; keep per-sample lists for
        events, labels, attributes and captions (their length varies)."""
        out = {key: [sample[key] for sample in batch] for key in batch[0]}
        for key in ("waveform", "frames"):
            out[key] = torch.stack(out[key])
        out["id"] = torch.tensor(out["id"], dtype=torch.int64)
        return out
