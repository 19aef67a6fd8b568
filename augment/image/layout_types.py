"""The condition of an image sample: a ``Layout`` (background, instances in drawing order) from
which the exact instance and semantic masks are computed, and its JSON form for the manifest.

Two kinds of instance share one interface (``category``, ``category_id``, ``colour``, ``phrase``,
``mask(H, W)``): ``Instance``, a shape of the procedural world, and ``MaskInstance``, an object
borrowed from a COCO file (``augment.image.coco_layouts``) whose mask is stored as COCO RLE.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from functools import cached_property

import numpy as np
from pycocotools import mask as mask_utils

from augment.image.world import BACKGROUND_PHRASES, CLASSES, shape_mask


@dataclass(frozen=True)
class Instance:
    """One object as drawn: ``radius`` and centre in pixels, ``rotation`` in radians.

    ``colour`` is None when the layout leaves the colour to the generator.
    """

    category: str
    colour: str | None
    cx: float
    cy: float
    radius: float
    rotation: float

    @property
    def category_id(self) -> int:
        return CLASSES.index(self.category) + 1

    @property
    def phrase(self) -> str:
        """E.g. "red circle" ("circle" when the colour is left open)."""
        return f"{self.colour + ' ' if self.colour else ''}{self.category}"

    def mask(self, height: int, width: int) -> np.ndarray:
        """Full (unoccluded) bool mask (H, W)."""
        return shape_mask(self.category, self.cx, self.cy, self.radius, self.rotation, height, width)


@dataclass(frozen=True)
class MaskInstance:
    """A borrowed object: its full mask as compressed COCO RLE (``counts``) of ``size`` (H, W),
    and an explicit ``category_id`` (1..K over the layout source's categories).

    ``source_id`` is the annotation id in the file it came from.
    """

    category: str
    category_id: int
    size: tuple[int, int]
    rle: str
    colour: str | None = None
    source_id: int | None = None

    @property
    def phrase(self) -> str:
        return f"{self.colour + ' ' if self.colour else ''}{self.category}"

    def mask(self, height: int, width: int) -> np.ndarray:
        """Full (unoccluded) bool mask (H, W); the layout's size is the RLE's size."""
        if (height, width) != tuple(self.size):
            raise ValueError(f"instance mask {self.source_id} is {tuple(self.size)}, asked for "
                             f"{(height, width)}")
        rle = {"size": [height, width], "counts": self.rle.encode("ascii")}
        return mask_utils.decode(rle).astype(bool)

    @classmethod
    def from_mask(cls, mask: np.ndarray, category: str, category_id: int,
                  source_id: int | None = None) -> "MaskInstance":
        """Encode a bool (H, W) mask."""
        rle = mask_utils.encode(np.asfortranarray(mask, dtype=np.uint8))
        return cls(category=category, category_id=category_id, size=tuple(mask.shape),
                   rle=rle["counts"].decode("ascii"), source_id=source_id)


@dataclass(frozen=True)
class Layout:
    """A scene description; instances are in drawing order (later ones occlude earlier ones)."""

    height: int
    width: int
    background: str | None
    instances: tuple[Instance | MaskInstance, ...]
    texture_seed: int = 0
    extra: dict = field(default_factory=dict)

    @cached_property
    def instance_map(self) -> np.ndarray:
        """(H, W) uint8: 0 = background, i + 1 = visible pixels of ``instances[i]``."""
        out = np.zeros((self.height, self.width), dtype=np.uint8)
        for i, inst in enumerate(self.instances):
            out[inst.mask(self.height, self.width)] = i + 1
        return out

    @cached_property
    def semantic_map(self) -> np.ndarray:
        """(H, W) class index per pixel (0 = background); uint8, or uint16 past 255 classes."""
        ids = [0] + [inst.category_id for inst in self.instances]
        lut = np.array(ids, dtype=np.uint8 if max(ids) < 256 else np.uint16)
        return lut[self.instance_map]

    def visible_masks(self) -> list[np.ndarray]:
        """Bool (H, W) visible mask of each instance, after occlusion (may be empty)."""
        return [self.instance_map == i + 1 for i in range(len(self.instances))]

    @property
    def caption(self) -> str:
        """E.g. "a red circle and a blue triangle on a striped background"."""
        phrases = [with_article(inst.phrase) for inst in self.instances]
        if not phrases:
            text = "an empty scene"
        elif len(phrases) == 1:
            text = phrases[0]
        else:
            text = ", ".join(phrases[:-1]) + " and " + phrases[-1]
        if self.background:
            text += " on " + BACKGROUND_PHRASES[self.background]
        return text

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "Layout":
        raw = json.loads(text)
        raw["instances"] = tuple(_instance_from_dict(inst) for inst in raw["instances"])
        return cls(**raw)


def _instance_from_dict(raw: dict) -> Instance | MaskInstance:
    if "rle" in raw:
        return MaskInstance(**{**raw, "size": tuple(raw["size"])})
    return Instance(**raw)


def with_article(noun_phrase: str) -> str:
    return ("an " if noun_phrase[0] in "aeiou" else "a ") + noun_phrase
