"""Sets of samples to evaluate, whatever their modality: files in a fixed order, the labels the
source knows, and the reader their modality supplies.

A set is opened by what its path is (``open_set``): a synthmill dataset folder is opened by the
modality its ``dataset.json`` names; anything else (a folder of samples, an annotation file) by the
first modality that recognises it. A set is read in chunks: each file is read from disk once and
decoded by the set's reader; a file that cannot be read or decoded is listed and excluded, never
fatal.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, ClassVar, Iterator

import torch

from augment.core.versions import resolve_dataset
from evaluation.registry import MODALITIES

DEFAULT_MODALITY = "image"
"""The modality of a dataset whose dataset.json does not name one (written before audio existed)."""


class DecodeError(ValueError):
    """A sample file's bytes are not a valid file of its modality."""


Reader = Callable[[bytes], torch.Tensor]
"""A modality's decoder: a file's bytes -> one sample as a tensor (images: uint8 (3, H, W));
raises ``DecodeError`` on corrupt data."""


@dataclass
class SampleSet:
    """Files of one set and their known labels, in a fixed order.

    ``read`` decodes one file's bytes (the modality's ``Reader``); ``captions`` are per file, or
    None where the source does not know them; ``groups`` maps a group name (e.g. "class=circle")
    to the row indices of its members.
    """

    modality: ClassVar[str]

    name: str
    root: Path
    files: list[Path]
    kind: str
    read: Reader
    captions: list[str] | None = None
    groups: dict[str, list[int]] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.files)

    def labels(self) -> dict:
        """Everything figures may depend on besides the files' contents (JSON-able)."""
        return {"captions": self.captions, "groups": self.groups}


def dataset_modality(root: str | Path) -> str:
    """The modality a dataset folder's dataset.json names (``DEFAULT_MODALITY`` if none)."""
    info = Path(root) / "dataset.json"
    if not info.exists():
        return DEFAULT_MODALITY
    return json.loads(info.read_text()).get("modality", DEFAULT_MODALITY)


def file_modality(path: str | Path) -> str:
    """The modality whose sample files have ``path``'s suffix."""
    suffix = Path(path).suffix.lower()
    for entry in MODALITIES:
        if suffix in entry.suffixes:
            return entry.name
    raise ValueError(f"{path}: no modality reads {suffix!r} files "
                     f"({ {m.name: list(m.suffixes) for m in MODALITIES} })")


def open_set(path: str | Path, samples_dir: str | Path | None = None,
             kept_only: bool = True) -> SampleSet:
    """Open a set by what ``path`` is: a dataset folder (has manifest.parquet), or whatever a
    modality recognises (a folder of its files; an annotation file such as a COCO .json, with its
    sample files in ``samples_dir``, default: the file's folder). A series of dataset versions
    (or a bare dataset name under ``datasets/``) means the version its ``latest`` points at."""
    path = resolve_dataset(path)
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist")
    if path.is_dir() and (path / "manifest.parquet").exists():
        return MODALITIES.get(dataset_modality(path)).load_hooks().open_dataset(path, kept_only)
    for entry in MODALITIES:
        found = entry.load_hooks().open_path(path, Path(samples_dir) if samples_dir else None)
        if found is not None:
            return found
    kinds = {m.name: list(m.suffixes) for m in MODALITIES}
    if path.is_dir():
        raise FileNotFoundError(f"{path} holds no sample files of any modality ({kinds})")
    raise ValueError(f"{path}: expected a synthmill dataset folder, a folder of samples ({kinds}), "
                     "a COCO annotation .json or a reference statistics .npz")


@dataclass
class Chunk:
    """Decoded samples of consecutive rows: ``samples[i]`` is row ``rows[i]``."""

    rows: list[int]
    samples: list[torch.Tensor]


def read_chunks(sample_set: SampleSet,
                chunk_size: int = 256) -> Iterator[tuple[Chunk, list[tuple[str, str]]]]:
    """Yield (decoded chunk, unreadable (file, reason) pairs): every file read once, decoded by the
    set's reader; unreadable rows are left out of the chunk."""
    for start in range(0, len(sample_set), chunk_size):
        rows, samples, bad = [], [], []
        for i in range(start, min(start + chunk_size, len(sample_set))):
            path = sample_set.files[i]
            try:
                data = path.read_bytes()
            except OSError as exc:
                bad.append((str(path), f"cannot read: {exc.strerror or exc}"))
                continue
            try:
                samples.append(sample_set.read(data))
            except DecodeError as exc:
                bad.append((str(path), f"cannot decode: {exc}"))
                continue
            rows.append(i)
        yield Chunk(rows, samples), bad
