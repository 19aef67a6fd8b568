"""Read a synthmill dataset folder: the torch ``Dataset`` ML teams train on, and the sample readers
the writers share with it.

A sample's instance mask PNG holds id ``k`` on the visible pixels of ``instances[k - 1]`` (drawing
order, exactly ``Layout.instance_map``). An instance hidden behind later ones has no pixel and is
not emitted, here and in every exported format, so the reader and the COCO/YOLO files agree.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
import torch
from PIL import Image

from augment.core.manifest import exported_rows as manifest_rows
from augment.core.versions import resolve_dataset

MANIFEST_COLUMNS = ("id", "image", "semantic_mask", "instance_mask", "split", "caption",
                    "instances", "kept", "status")


class SampleReadError(OSError):
    """A sample's image or mask file is missing, unreadable or inconsistent; names file and id."""


def exported_rows(manifest: pd.DataFrame, split: str | None = None,
                  kept_only: bool = True) -> list[dict]:
    """The image manifest's rows to read or export (``augment.core.manifest.exported_rows``)."""
    return manifest_rows(manifest, MANIFEST_COLUMNS, split, kept_only)


def check_categories(instances: list[dict], categories: list[str], image_id: int) -> None:
    """Raise ``ValueError`` unless every instance's category_id names its category."""
    for inst in instances:
        cid = inst["category_id"]
        if not (1 <= cid <= len(categories) and categories[cid - 1] == inst["category"]):
            raise ValueError(f"sample {image_id}: instance {inst['category']!r} has category_id "
                             f"{cid}, but the categories are {categories} (id = index + 1)")


def _read_error(row: dict, column: str, path: Path, exc: Exception) -> SampleReadError:
    return SampleReadError(f"sample {row['id']}: cannot read {column} file {path}: {exc}")


def _read(root: Path, row: dict, column: str, mode: str | None = None) -> np.ndarray:
    """Fully decode the file ``row[column]`` into a writable array (PIL decodes lazily, so a
    truncated file would otherwise pass ``open``); ``mode`` converts it first (e.g. "RGB")."""
    path = root / row[column]
    try:
        with Image.open(path) as im:
            return np.array(im.convert(mode) if mode else im)
    except (OSError, ValueError) as exc:
        raise _read_error(row, column, path, exc) from exc


def image_size(root: Path, row: dict) -> tuple[int, int]:
    """(H, W) of the sample's image, read from the file header only."""
    path = root / row["image"]
    try:
        with Image.open(path) as im:
            return im.height, im.width
    except (OSError, ValueError) as exc:
        raise _read_error(row, "image", path, exc) from exc


def read_image(root: Path, row: dict) -> np.ndarray:
    """The sample's image, (H, W, 3) uint8."""
    return _read(root, row, "image", "RGB")


def read_label_map(root: Path, row: dict, column: str, shape: tuple[int, int]) -> np.ndarray:
    """A per-pixel label map (``"instance_mask"`` or ``"semantic_mask"``), (H, W) uint8 or uint16.

    Raises ``SampleReadError`` naming the file when its shape is not the image's ``shape``.
    """
    label_map = _read(root, row, column)
    if label_map.shape != tuple(shape):
        raise SampleReadError(f"sample {row['id']}: {column} file {root / row[column]} has shape "
                              f"{label_map.shape}, but the image is {tuple(shape)}")
    return label_map


def visible_instances(instance_map: np.ndarray, n_instances: int, image_id: int) -> list[int]:
    """Indexes (0-based, drawing order) of the instances with at least one visible pixel.

    ``instance_map`` is (H, W) with 0 = background and ``k`` = ``instances[k - 1]``.
    """
    counts = np.bincount(instance_map.ravel().astype(np.int64), minlength=n_instances + 1)
    if len(counts) > n_instances + 1:
        raise ValueError(f"sample {image_id}: instance mask holds id {len(counts) - 1}, but the "
                         f"manifest lists only {n_instances} instances")
    return [int(k) for k in np.flatnonzero(counts[1:])]


def mask_xyxy(mask: np.ndarray) -> tuple[int, int, int, int]:
    """Pixel extent of a non-empty bool (H, W) mask: (min col, min row, max col + 1,
    max row + 1), the COCO bbox as corners."""
    cols, rows = np.flatnonzero(mask.any(axis=0)), np.flatnonzero(mask.any(axis=1))
    return int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1


def attributes(instance: dict) -> dict:
    """The per-instance attributes every format carries (``verify_clip`` too when the dataset was
    verified with CLIP); a NaN score becomes None (valid JSON)."""
    out = {"colour": instance.get("colour"), "colour_source": instance.get("colour_source"),
           "verify_iou": _finite(instance.get("verify_iou"))}
    if "verify_clip" in instance:
        out["verify_clip"] = _finite(instance["verify_clip"])
    return out


def _finite(score: float | None) -> float | None:
    return None if score is None or not np.isfinite(score) else score


class SynthDataset(torch.utils.data.Dataset):
    """Images, instance masks, boxes and labels of a synthmill dataset folder.

    Example::

        ds = SynthDataset("datasets/shapes")
        dl = DataLoader(ds, batch_size=8, collate_fn=SynthDataset.collate_fn)

    Each item is a dict:
      - ``image``: float32 (3, H, W) in [0, 1]
      - ``boxes``: float32 (N, 4) xyxy in pixels, the mask extent (x2 = max col + 1)
      - ``labels``: int64 (N,) category ids (``classes[label - 1]`` is the name)
      - ``masks``: bool (N, H, W), the visible pixels of each emitted instance
      - ``semantic``: int64 (H, W) category id per pixel, 0 = background
      - ``id``: int, ``caption``: str, ``attributes``: N dicts (colour, colour_source, verify_iou)

    N counts the instances with a visible pixel, in drawing order; the same ones, with the same
    boxes and areas, as ``annotations/instances.json``. A boxes-only dataset (``labels`` "boxes"
    in dataset.json, e.g. made by ``gligen``) has no ``masks`` and no ``semantic``. ``split`` is "train", "val" or None (all);
    ``kept_only=False`` adds samples that verification rejected (failed samples never appear).
    ``transform`` is called on the whole dict, so geometric transforms can move boxes and masks.
    """

    def __init__(self, root: str | Path, split: str | None = None, kept_only: bool = True,
                 transform: Callable[[dict], dict] | None = None):
        self.root = resolve_dataset(root)
        info_path = self.root / "dataset.json"
        try:
            info = json.loads(info_path.read_text())
            self._classes = list(info["categories"])
        except (OSError, ValueError, KeyError) as exc:
            raise ValueError(f"{info_path}: cannot read the category list ({exc!r})") from exc
        self.has_masks = info.get("labels", "masks") == "masks"
        manifest_path = self.root / "manifest.parquet"
        try:
            manifest = pd.read_parquet(manifest_path)
        except (OSError, ValueError) as exc:
            raise ValueError(f"{manifest_path}: cannot read the manifest ({exc})") from exc
        self.rows = exported_rows(manifest, split=split, kept_only=kept_only)
        self.transform = transform

    @property
    def classes(self) -> list[str]:
        """Category names; category id ``i + 1`` is ``classes[i]``."""
        return list(self._classes)

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index: int) -> dict:
        row = self.rows[index]
        image = read_image(self.root, row)  # (H, W, 3) uint8
        shape = image.shape[:2]
        instance_map = read_label_map(self.root, row, "instance_mask", shape)
        instances = json.loads(row["instances"])
        visible = visible_instances(instance_map, len(instances), row["id"])
        ids = np.asarray(visible, dtype=np.int64) + 1  # (N,)
        masks = instance_map[None] == ids[:, None, None]  # (N, H, W)
        boxes = [mask_xyxy(mask) for mask in masks]
        sample = {
            "image": torch.from_numpy(image).permute(2, 0, 1).float() / 255.0,
            "boxes": torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
            "labels": torch.tensor([instances[k]["category_id"] for k in visible],
                                   dtype=torch.int64),
            "id": int(row["id"]),
            "caption": row["caption"],
            "attributes": [attributes(instances[k]) for k in visible],
        }
        if self.has_masks:
            semantic = read_label_map(self.root, row, "semantic_mask", shape)
            sample["masks"] = torch.from_numpy(masks)
            sample["semantic"] = torch.from_numpy(semantic.astype(np.int64))
        return self.transform(sample) if self.transform else sample

    @staticmethod
    def collate_fn(batch: list[dict]) -> dict:
        """Stack the fixed-size fields (``image`` (B, 3, H, W), ``semantic`` (B, H, W), ``id``
        (B,)); keep per-sample lists for the fields whose N varies (boxes, labels, masks,
        attributes) and for captions."""
        out = {key: [sample[key] for sample in batch] for key in batch[0]}
        out["image"] = torch.stack(out["image"])
        if "semantic" in out:
            out["semantic"] = torch.stack(out["semantic"])
        out["id"] = torch.tensor(out["id"], dtype=torch.int64)
        return out
