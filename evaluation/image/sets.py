"""Image sets to evaluate: a synthmill dataset, a plain image folder, or a COCO file + image folder.

An ``ImageSet`` is an ``evaluation.sets.SampleSet`` whose reader decodes image files with PIL and
whose labels may include layouts. Extractors take the decoded images resized to their input size
(``stack_resized``).
"""

from __future__ import annotations

import io
import json
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

import numpy as np
import pandas as pd
import torch
from PIL import Image

from augment.core.versions import dataset_label
from augment.image.layout_types import Layout
from evaluation.registry import MODALITIES
from evaluation.sets import DecodeError, Reader, SampleSet

LAYOUT_CACHE_PIXELS = 64 * 1024 * 1024  # parsed layouts kept per set (their masks: ~2 bytes/pixel)


def decode_image(data: bytes) -> torch.Tensor:
    """An image file's bytes (PNG, JPEG, ...) -> uint8 (3, H, W) RGB; ``DecodeError`` if corrupt."""
    try:
        with Image.open(io.BytesIO(data)) as im:
            array = np.asarray(im.convert("RGB"))
    except (OSError, ValueError, Image.DecompressionBombError) as exc:
        raise DecodeError(str(exc)) from exc
    return torch.from_numpy(array.copy()).permute(2, 0, 1)


@dataclass
class ImageSet(SampleSet):
    """Image files of one set and their known labels, in a fixed order.

    ``layouts`` (JSON) are per file, or None where the source does not know them.
    """

    modality: ClassVar[str] = "image"

    read: Reader = decode_image
    layouts: list[str] | None = None
    _parsed: "OrderedDict[int, Layout]" = field(default_factory=OrderedDict, repr=False,
                                                compare=False)

    def labels(self) -> dict:
        return {**super().labels(), "layouts": self.layouts}

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


def open_dataset(root: Path, kept_only: bool) -> ImageSet:
    """A synthmill image dataset: its generated (or, with ``kept_only``, kept) samples by id,
    grouped by class and by any sampler setting that varies."""
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
    return ImageSet(dataset_label(root), root, [root / p for p in rows["image"]], "synthmill",
                    captions=list(rows["caption"]), layouts=list(rows["layout"]), groups=groups)


def open_path(path: Path, images: Path | None) -> ImageSet | None:
    """A COCO annotation .json (``images``: its image folder, default: the json's folder) or a
    folder of image files; None when ``path`` is neither."""
    if path.suffix == ".json":
        return _coco_set(path, images or path.parent)
    if path.is_dir():
        suffixes = MODALITIES.get(ImageSet.modality).suffixes
        files = sorted(p for p in path.rglob("*") if p.suffix.lower() in suffixes)
        return ImageSet(path.name, path, files, "folder") if files else None
    return None


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


def stack_resized(images: list[torch.Tensor], size: int | None) -> torch.Tensor:
    """Stack uint8 (3, H, W) images into (B, 3, S, S); resizes (bilinear, antialiased) only images
    whose size differs, so a set of equal-size images passes through untouched. ``size`` None: the
    first image's width."""
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
