"""Image sets to evaluate: a synthmill dataset, a plain image folder, or a COCO file + image folder.

An ``ImageSet`` is a list of files plus whatever labels the source knows (captions, layouts). It is
read in chunks: each file is read from disk once, hashed (for the feature cache) and decoded, and
a file that cannot be decoded is listed and excluded, never fatal.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import numpy as np
import pandas as pd
import torch
from PIL import Image

from augment.image.layout_types import Layout

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp", ".bmp"}
LAYOUT_CACHE_PIXELS = 64 * 1024 * 1024  # parsed layouts kept per set (their masks: ~2 bytes/pixel)


@dataclass
class ImageSet:
    """Files of one set and their known labels, in a fixed order.

    ``captions`` / ``layouts`` (JSON) are per file, or None where the source does not know them.
    ``groups`` maps a group name (e.g. "class=circle") to row indices of its members.
    """

    name: str
    root: Path
    files: list[Path]
    kind: str
    captions: list[str] | None = None
    layouts: list[str] | None = None
    groups: dict[str, list[int]] = field(default_factory=dict)
    _parsed: "OrderedDict[int, Layout]" = field(default_factory=OrderedDict, repr=False,
                                                compare=False)

    def __len__(self) -> int:
        return len(self.files)

    def layout(self, row: int) -> Layout:
        """The parsed ``Layout`` of a row. Recently used ones are kept (up to
        ``LAYOUT_CACHE_PIXELS`` pixels of masks), so the masks a layout renders are shared by every
        metric that needs them (crops, layout fidelity) instead of rendered again."""
        if self.layouts is None:
            raise ValueError(f"{self.name} has no layouts")
        row = int(row)
        if row in self._parsed:
            self._parsed.move_to_end(row)
            return self._parsed[row]
        layout = Layout.from_json(self.layouts[row])
        self._parsed[row] = layout
        budget = LAYOUT_CACHE_PIXELS // max(1, layout.height * layout.width)
        while len(self._parsed) > max(1, budget):
            self._parsed.popitem(last=False)
        return layout

    def subset(self, rows: list[int]) -> "ImageSet":
        pick = lambda xs: [xs[i] for i in rows] if xs is not None else None  # noqa: E731
        return ImageSet(self.name, self.root, pick(self.files), self.kind, pick(self.captions),
                        pick(self.layouts))


def open_image_set(path: str | Path, images: str | Path | None = None,
                   kept_only: bool = True) -> ImageSet:
    """Open a set by what ``path`` is: a dataset folder (has manifest.parquet), a COCO json
    (``images`` = its image folder, default: the json's folder), or a folder of images."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist")
    if path.is_dir() and (path / "manifest.parquet").exists():
        return _synthmill_set(path, kept_only)
    if path.suffix == ".json":
        return _coco_set(path, Path(images) if images else path.parent)
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise FileNotFoundError(f"{path} holds no images ({sorted(IMAGE_SUFFIXES)})")
        return ImageSet(path.name, path, files, "folder")
    raise ValueError(f"{path}: expected a synthmill dataset folder, an image folder, a COCO "
                     "annotation .json or a reference statistics .npz")


def _synthmill_set(root: Path, kept_only: bool) -> ImageSet:
    manifest = pd.read_parquet(root / "manifest.parquet")
    keep = manifest["status"] != "failed"
    if kept_only:
        keep &= manifest["kept"].astype(bool)
    rows = manifest[keep].sort_values("id").reset_index(drop=True)
    groups: dict[str, list[int]] = {}
    for i, text in enumerate(rows["instances"]):
        for name in sorted({inst["category"] for inst in json.loads(text)}):
            groups.setdefault(f"class={name}", []).append(i)
    for key, col in (("scheduler", "scheduler"), ("guidance", "guidance")):
        if col in rows and rows[col].nunique() > 1:
            for value, idx in rows.groupby(col).groups.items():
                groups[f"{key}={value}"] = sorted(idx.tolist())
    return ImageSet(root.name, root, [root / p for p in rows["image"]], "synthmill",
                    captions=list(rows["caption"]), layouts=list(rows["layout"]), groups=groups)


def _coco_set(annotation_file: Path, image_dir: Path) -> ImageSet:
    coco = json.loads(annotation_file.read_text())
    cats = {c["id"]: c["name"] for c in coco.get("categories", [])}
    images = sorted(coco["images"], key=lambda im: im["id"])
    index = {im["id"]: i for i, im in enumerate(images)}
    groups: dict[str, set[int]] = {}
    for ann in coco.get("annotations", []):
        if ann["image_id"] in index and ann.get("category_id") in cats:
            groups.setdefault(f"class={cats[ann['category_id']]}", set()).add(index[ann["image_id"]])
    captions = [im.get("caption") for im in images]
    return ImageSet(annotation_file.stem, image_dir, [image_dir / im["file_name"] for im in images],
                    "coco", captions=captions if all(captions) else None,
                    groups={k: sorted(v) for k, v in sorted(groups.items())})


@dataclass
class Chunk:
    """Decoded images of consecutive rows: ``images[i]`` is uint8 (3, H, W) of row ``rows[i]``."""

    rows: list[int]
    images: list[torch.Tensor]


def read_chunks(image_set: ImageSet, chunk_size: int = 256) -> Iterator[tuple[Chunk, list[str], list[tuple[str, str]]]]:
    """Yield (decoded chunk, content hashes of every row in it, unreadable (file, reason) pairs).

    Every file is read once; a hash is reported for every row (also unreadable ones, so a later
    repair of the file changes the set's key) and unreadable rows are left out of the chunk.
    """
    for start in range(0, len(image_set), chunk_size):
        rows, images, hashes, bad = [], [], [], []
        for i in range(start, min(start + chunk_size, len(image_set))):
            path = image_set.files[i]
            try:
                data = path.read_bytes()
            except OSError as exc:
                hashes.append(f"unreadable:{path}")
                bad.append((str(path), f"cannot read: {exc.strerror or exc}"))
                continue
            hashes.append(hashlib.blake2b(data, digest_size=16).hexdigest())
            try:
                with Image.open(io.BytesIO(data)) as im:
                    array = np.asarray(im.convert("RGB"))
            except (OSError, ValueError, Image.DecompressionBombError) as exc:
                bad.append((str(path), f"cannot decode: {exc}"))
                continue
            rows.append(i)
            images.append(torch.from_numpy(array.copy()).permute(2, 0, 1))
        yield Chunk(rows, images), hashes, bad


def stack_resized(images: list[torch.Tensor], size: int | None) -> torch.Tensor:
    """Stack uint8 (3, H, W) images into (B, 3, S, S); resizes (bilinear, antialiased) only images
    whose size differs, so a set of equal-size images passes through untouched."""
    if size is None:
        size = images[0].shape[-1]
    out = []
    for image in images:
        if image.shape[-2:] != (size, size):
            image = torch.nn.functional.interpolate(
                image[None].float(), size=(size, size), mode="bilinear", antialias=True,
                align_corners=False)[0].round().clamp(0, 255).to(torch.uint8)
        out.append(image)
    return torch.stack(out)
