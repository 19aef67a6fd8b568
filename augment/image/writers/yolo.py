"""YOLO export in the Ultralytics layout, one folder per task::

    yolo/detect/    images -> ../../images, labels/<stem>.txt, train.txt, val.txt, data.yaml
    yolo/segment/   the same, with polygon labels

Train with e.g. ``yolo segment train data=<dataset>/yolo/segment/data.yaml``.

data.yaml has no ``path`` key on purpose: Ultralytics then takes the dataset root to be the folder
that holds data.yaml, so the folder still works after it is moved or mounted elsewhere (``path: .``
would be resolved against the current working directory instead, and a relative ``path`` that does
not exist there against Ultralytics' ``datasets_dir``). ``train.txt`` / ``val.txt`` list lines like
``./images/000012.png``, which Ultralytics resolves against the list file's folder; it finds each
label file by replacing ``/images/`` with ``/labels/`` in the image path. YOLO class =
category_id - 1; coordinates are normalised by the image width W and height H.

- detect: ``cls cx cy w h``, the visible mask's extent, i.e. the COCO bbox ``[x, y, w, h]`` as
  ``cx = (x + w / 2) / W``, ``w = w / W`` (and likewise in y).
- segment: ``cls x1 y1 x2 y2 ...``, the outer contour of the visible mask as Ultralytics' own
  ``masks2segments`` finds it (``cv2.findContours``, external, simple chain), through the centres of
  the boundary pixels: ``x = (col + 0.5) / W``. An instance that occlusion split into several
  parts becomes one polygon joined the way Ultralytics' ``merge_multi_segment`` joins COCO
  multi-part polygons: each part is walked whole and consecutive parts are linked by a zero-width
  bridge between their closest vertices, so filling the polygon gives back every part. Holes (an
  object seen through another's interior) cannot be expressed and are filled. A contour of fewer
  than 3 vertices (a region one pixel wide) repeats its last vertex, so every row stays valid.

An image with no visible instance gets an empty label file (a background image). A boxes-only
dataset (``labels="boxes"``, e.g. the ``gligen`` backend) gets ``yolo/detect`` only.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import yaml
from tqdm import tqdm

from augment.core.io import atomic_write_text
from augment.core.manifest import SPLITS
from augment.image.dataset import (check_categories, exported_rows, image_size, mask_xyxy,
                                   read_label_map, visible_instances)

log = logging.getLogger(__name__)

TASKS = ("detect", "segment")
_IMAGES_LINK = "../../images"  # from yolo/<task>/images to <root>/images


def detect_line(cls: int, mask: np.ndarray) -> str:
    """``cls cx cy w h`` of a non-empty bool (H, W) mask's extent, normalised to [0, 1]."""
    height, width = mask.shape
    x1, y1, x2, y2 = mask_xyxy(mask)
    values = ((x1 + x2) / 2 / width, (y1 + y2) / 2 / height, (x2 - x1) / width, (y2 - y1) / height)
    return " ".join([str(cls), *(f"{v:.6f}" for v in values)])


def mask_polygon(mask: np.ndarray) -> np.ndarray:
    """One polygon (P, 2) float64 of (x, y) pixel-centre coordinates, P >= 3, tracing every part
    of a non-empty bool (H, W) mask (see the module docstring for how parts are joined)."""
    contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL,
                                   cv2.CHAIN_APPROX_SIMPLE)
    polygon = _join([c.reshape(-1, 2).astype(np.float64) + 0.5 for c in contours])
    if len(polygon) < 3:
        polygon = np.concatenate([polygon, np.repeat(polygon[-1:], 3 - len(polygon), axis=0)])
    return polygon


def _join(parts: list[np.ndarray]) -> np.ndarray:
    """Join closed contours (P_i, 2) into one: part i is entered at ``entry[i]``, walked round to
    its vertex closest to part i + 1, through part i + 1 and back over the same bridge."""
    entry, exit_ = [0], []
    for a, b in zip(parts, parts[1:]):
        dist = ((a[:, None, :] - b[None, :, :]) ** 2).sum(-1)  # (P_a, P_b)
        i, j = np.unravel_index(dist.argmin(), dist.shape)
        exit_.append(int(i))
        entry.append(int(j))
    ring = np.roll(parts[-1], -entry[-1], axis=0)
    joined = np.concatenate([ring, ring[:1]])  # closed: ends where it starts
    for k in reversed(range(len(parts) - 1)):
        ring = np.roll(parts[k], -entry[k], axis=0)
        e = (exit_[k] - entry[k]) % len(ring)
        joined = np.concatenate([ring[:e + 1], joined, ring[e:], ring[:1]])
    return joined[:-1]  # a YOLO polygon closes implicitly


def segment_line(cls: int, mask: np.ndarray) -> str:
    """``cls x1 y1 x2 y2 ...`` of a non-empty bool (H, W) mask, normalised to [0, 1]."""
    height, width = mask.shape
    xy = mask_polygon(mask) / np.array([width, height])
    return " ".join([str(cls), *(f"{v:.6f}" for v in xy.ravel())])


def yolo_labels_for_sample(instance_map: np.ndarray, instances: list[dict],
                           image_id: int) -> tuple[list[str], list[str]]:
    """(detect lines, segment lines) of one sample, one line per visible instance in drawing
    order. ``instance_map`` is (H, W), 0 = background, ``k`` = ``instances[k - 1]``."""
    detect, segment = [], []
    for k in visible_instances(instance_map, len(instances), image_id):
        cls, mask = instances[k]["category_id"] - 1, instance_map == k + 1
        detect.append(detect_line(cls, mask))
        segment.append(segment_line(cls, mask))
    return detect, segment


def write_yolo(root: str | Path, manifest: pd.DataFrame, categories: list[str],
               labels: str = "masks") -> Path:
    """Write ``yolo/detect`` and ``yolo/segment`` (only ``detect`` for ``labels="boxes"``) for
    the kept, ok samples of ``manifest`` (atomically, file by file; calling again overwrites).
    Returns the ``yolo`` folder."""
    root = Path(root)
    folders = {task: root / "yolo" / task
               for task in (TASKS if labels == "masks" else TASKS[:1])}
    lists: dict[str, list[str]] = {split: [] for split in SPLITS}
    for row in tqdm(exported_rows(manifest), desc="YOLO export", unit="image", disable=None):
        image = Path(row["image"])
        if image.parts[0] != "images":
            raise ValueError(f"sample {row['id']}: image {image} is not under images/, which "
                             "the yolo/<task>/images link points to")
        instance_map = read_label_map(root, row, "instance_mask", image_size(root, row))
        instances = json.loads(row["instances"])
        check_categories(instances, categories, row["id"])
        labels = dict(zip(TASKS, yolo_labels_for_sample(instance_map, instances, row["id"])))
        label_file = Path("labels", *image.parts[1:]).with_suffix(".txt")
        for task in folders:
            lines = labels[task]
            atomic_write_text(folders[task] / label_file, "".join(f"{x}\n" for x in lines))
        lists[row["split"]].append(f"./{image.as_posix()}")
    for split, lines in lists.items():
        if not lines:
            log.warning("YOLO export of %s: the %s split is empty; Ultralytics will refuse to "
                        "train on it", root, split)
    for folder in folders.values():
        _link_images(folder)
        for split, lines in lists.items():
            atomic_write_text(folder / f"{split}.txt", "".join(f"{x}\n" for x in lines))
        atomic_write_text(folder / "data.yaml", _data_yaml(categories))
    return root / "yolo"


def _data_yaml(categories: list[str]) -> str:
    config = {"train": "train.txt", "val": "val.txt", "nc": len(categories),
              "names": dict(enumerate(categories))}
    return ("# No 'path' key: Ultralytics then uses this file's folder as the dataset root.\n"
            + yaml.safe_dump(config, sort_keys=False))


def _link_images(folder: Path) -> None:
    """Point ``folder/images`` at the dataset's images with a relative symlink, atomically."""
    link = folder / "images"
    if link.exists() and not link.is_symlink():
        raise FileExistsError(f"{link} exists and is not a symlink; remove it to export YOLO")
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / ".images.tmp"  # a leftover is cleared by io.remove_stale_temp_files
    tmp.unlink(missing_ok=True)
    os.symlink(_IMAGES_LINK, tmp)
    os.replace(tmp, link)
