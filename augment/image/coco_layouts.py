"""Layouts borrowed from a COCO instances file: real arrangements of real categories, new pixels.

A borrowed layout keeps an image's objects (category, mask) and drops its pixels; a backend then
renders a new image for it, so the labels stay exact. Crowd annotations are skipped (one region
for many objects is not an instance). An image is drawable when it holds at least
``objects_per_image[0]`` kept objects; of a drawable image the ``objects_per_image[1]`` largest
are kept, drawn largest first, so small objects lie on top of the large ones they overlap.

Rebalancing is repeat-factor sampling (LVIS, Gupta et al. 2019): with ``f(c)`` the share of
drawable images holding class ``c`` and threshold ``t``, ``r(c) = max(1, sqrt(t / f(c)))`` and an
image is drawn with weight ``max_c r(c)`` over its classes.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image
from pycocotools import mask as mask_utils

from augment.config.image import CocoLayoutSpec
from augment.core.seeds import sample_seeds
from augment.image.layout_types import Layout, MaskInstance

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CocoSource:
    """The drawable images of a COCO file.

    ``categories``: kept category names in COCO id order (dataset id = index + 1);
    ``images``: per image (COCO image id, height, width, objects), each object
    (category index, segmentation, annotation id), largest first; ``weights``: (N,) float64
    sampling probabilities of the images, summing to 1.
    """

    categories: tuple[str, ...]
    images: tuple[tuple[int, int, int, tuple], ...]
    weights: np.ndarray


def load_coco_source(spec: CocoLayoutSpec) -> CocoSource:
    """Read ``spec.coco_file`` once per process (keyed by its path, size and mtime)."""
    path = Path(spec.coco_file).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"layout.coco_file: {path} does not exist")
    stat = path.stat()
    classes = tuple(spec.coco_classes) if spec.coco_classes is not None else None
    return _load(str(path.resolve()), stat.st_size, stat.st_mtime_ns, classes,
                 spec.objects_per_image, spec.coco_repeat_threshold)


@lru_cache(maxsize=2)
def _load(path: str, size: int, mtime_ns: int, classes: tuple[str, ...] | None,
          objects_per_image: tuple[int, int], threshold: float | None) -> CocoSource:
    try:
        raw = json.loads(Path(path).read_text(encoding="utf-8"))
        coco_categories = sorted(raw["categories"], key=lambda c: c["id"])
        images, annotations = raw["images"], raw["annotations"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"layout.coco_file: {path} is not a COCO instances file ({exc!r})") from None
    categories = _kept_categories(coco_categories, classes)
    index_of = {c["id"]: categories.index(c["name"]) for c in coco_categories
                if c["name"] in categories}
    objects: dict[int, list] = {}
    for ann in annotations:
        if ann.get("iscrowd", 0) or ann["category_id"] not in index_of:
            continue
        objects.setdefault(ann["image_id"], []).append(ann)
    drawable = []
    for image in sorted(images, key=lambda im: im["id"]):
        anns = sorted(objects.get(image["id"], []), key=lambda a: (-a.get("area", 0), a["id"]))
        if len(anns) >= objects_per_image[0]:
            kept = tuple((index_of[a["category_id"]], a["segmentation"], a["id"])
                         for a in anns[:objects_per_image[1]])
            drawable.append((image["id"], image["height"], image["width"], kept))
    if not drawable:
        raise ValueError(f"layout.coco_file: no image of {path} holds at least "
                         f"{objects_per_image[0]} objects of the kept categories")
    log.info("borrowing layouts from %d images of %s", len(drawable), path)
    weights = repeat_factors(drawable, len(categories), threshold)
    return CocoSource(tuple(categories), tuple(drawable), weights / weights.sum())


def _kept_categories(coco_categories: list[dict], classes: tuple[str, ...] | None) -> list[str]:
    names = [c["name"] for c in coco_categories]
    if classes is None:
        return names
    unknown = sorted(set(classes) - set(names))
    if unknown:
        raise ValueError(f"layout.coco_classes: {unknown} are not categories of the COCO file; "
                         f"it has {names}")
    return [n for n in names if n in classes]


def repeat_factors(images: list[tuple], num_classes: int, threshold: float | None) -> np.ndarray:
    """(N,) image repeat factors ``max_c max(1, sqrt(t / f(c)))``; all ones without ``t``."""
    if threshold is None:
        return np.ones(len(images))
    present = [{obj[0] for obj in image[3]} for image in images]
    freq = np.bincount([c for classes in present for c in classes], minlength=num_classes)
    per_class = np.maximum(1.0, np.sqrt(threshold / np.maximum(freq / len(images), 1e-12)))
    return np.array([max(per_class[c] for c in classes) for classes in present])


def sample_coco_layout(spec: CocoLayoutSpec, seed: int, index: int) -> Layout:
    """The borrowed layout of sample ``index`` (deterministic in ``(seed, index)``), its masks
    fitted to ``spec.height`` x ``spec.width`` (``spec.coco_fit``); objects the fit leaves without
    a pixel are dropped. ``extra["coco_image_id"]`` names the image it came from."""
    source = load_coco_source(spec)
    rng = np.random.default_rng(sample_seeds(seed, index)[0])
    image_id, height, width, objects = source.images[rng.choice(len(source.images),
                                                                p=source.weights)]
    instances = []
    for category, segmentation, ann_id in objects:
        mask = fit_mask(decode_segmentation(segmentation, height, width), spec.height,
                        spec.width, spec.coco_fit)
        if mask.any():
            instances.append(MaskInstance.from_mask(mask, source.categories[category],
                                                    category + 1, ann_id))
    return Layout(height=spec.height, width=spec.width, background=None,
                  instances=tuple(instances), extra={"coco_image_id": int(image_id)})


def decode_segmentation(segmentation, height: int, width: int) -> np.ndarray:
    """A COCO segmentation (polygons, uncompressed or compressed RLE) -> bool (H, W) mask."""
    if isinstance(segmentation, list):  # polygons: one RLE per part, merged
        rle = mask_utils.merge(mask_utils.frPyObjects(segmentation, height, width))
    elif isinstance(segmentation["counts"], list):
        rle = mask_utils.frPyObjects(segmentation, height, width)
    else:
        rle = segmentation
    return mask_utils.decode(rle).astype(bool)


def fit_mask(mask: np.ndarray, height: int, width: int, fit: str) -> np.ndarray:
    """Resize a bool (h, w) mask to (height, width) with nearest-neighbour sampling: "stretch"
    both sides, or "crop": scale the shorter side to fit and keep the centre."""
    h, w = mask.shape
    if fit == "stretch":
        size = (width, height)
    else:
        scale = max(height / h, width / w)
        size = (max(width, round(w * scale)), max(height, round(h * scale)))
    resized = np.asarray(Image.fromarray(mask).resize(size, Image.NEAREST))
    top, left = (resized.shape[0] - height) // 2, (resized.shape[1] - width) // 2
    return resized[top:top + height, left:left + width]
