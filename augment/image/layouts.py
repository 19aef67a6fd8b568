"""Layouts: the labels of a sample, drawn before any pixel exists.

``sample_layout(spec, seed, index)`` draws a ``Layout`` (instances with class, colour, geometry,
background, caption) from a ``LayoutSpec`` with a per-sample seed derived from ``(seed, index)``,
in the manner of Scaper's declarative spec plus a record of the values actually drawn: the layout's
JSON holds every drawn value, and ``Layout.from_json`` rebuilds the exact masks from it.

Two kinds of instance share one interface (``category``, ``category_id``, ``colour``, ``phrase``,
``mask(H, W)``): ``Instance``, a shape of the procedural world, and ``MaskInstance``, an object
borrowed from a COCO file (``augment.image.coco_layouts``) whose mask is stored as COCO RLE.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from functools import cached_property, lru_cache
from pathlib import Path

import numpy as np
from pycocotools import mask as mask_utils

from augment.config import LayoutSpec
from augment.image.world import (BACKGROUND_PHRASES, CLASSES, PALETTE, _OBJECT_JITTER, _PIXEL_NOISE,
                                  render_background, sample_colour, shape_mask)

_PLACEMENT_TRIES = 30


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


def sample_seeds(seed: int, index: int) -> tuple[int, int]:
    """Two independent 63-bit seeds (layout stream, noise stream) for sample ``index`` of a run."""
    layout_state, noise_state = np.random.SeedSequence([seed, index]).spawn(2)
    return (int(layout_state.generate_state(1, np.uint64)[0] >> np.uint64(1)),
            int(noise_state.generate_state(1, np.uint64)[0] >> np.uint64(1)))


def layout_categories(spec: LayoutSpec) -> list[str]:
    """The dataset's category names; category id ``i + 1`` is ``categories[i]``: the shapes
    world's classes, or the kept categories of ``spec.coco_file`` in COCO id order."""
    if spec.coco_file is not None:
        from augment.image.coco_layouts import load_coco_source

        return list(load_coco_source(spec).categories)
    return list(CLASSES)


def sample_layout(spec: LayoutSpec, seed: int, index: int) -> Layout:
    """Draw the layout of sample ``index`` of a run seeded with ``seed`` (deterministic): shapes,
    or a layout borrowed from ``spec.coco_file``; with ``spec.background_images``, also the
    background image it is pasted on (``extra["background_image"]``)."""
    if spec.coco_file is not None:
        from augment.image.coco_layouts import sample_coco_layout

        layout = sample_coco_layout(spec, seed, index)
    else:
        layout = sample_shapes_layout(spec, seed, index)
    if spec.background_images is not None:
        layout = _with_background_image(layout, spec.background_images, seed, index)
    return layout


def _with_background_image(layout: Layout, folder: str, seed: int, index: int) -> Layout:
    files = _image_files(str(Path(folder).expanduser()))
    rng = np.random.default_rng(np.random.SeedSequence([seed, index, 2]))
    chosen = files[int(rng.integers(len(files)))]
    return Layout(layout.height, layout.width, layout.background, layout.instances,
                  layout.texture_seed, {**layout.extra, "background_image": chosen})


@lru_cache(maxsize=4)
def _image_files(folder: str) -> tuple[str, ...]:
    path = Path(folder)
    if not path.is_dir():
        raise FileNotFoundError(f"layout.background_images: folder {path} does not exist")
    files = sorted(str(p) for p in path.iterdir() if p.suffix.lower() in (".png", ".jpg", ".jpeg"))
    if not files:
        raise FileNotFoundError(f"layout.background_images: no .png/.jpg images in {path}")
    return tuple(files)


def sample_shapes_layout(spec: LayoutSpec, seed: int, index: int) -> Layout:
    """Draw a shapes-world layout (see ``sample_layout``)."""
    rng = np.random.default_rng(sample_seeds(seed, index)[0])
    h, w = spec.height, spec.width
    probs = spec.class_probabilities()
    classes = list(probs)
    n_objects = int(rng.integers(spec.objects_per_image[0], spec.objects_per_image[1] + 1))
    side = min(h, w)
    placed: list[Instance] = []
    masks: list[np.ndarray] = []
    for _ in range(n_objects):
        category = str(classes[rng.choice(len(classes), p=list(probs.values()))])
        colour = sample_colour(category, spec.colours, spec.colour_bias, rng)
        if rng.random() < spec.colour_unspecified:
            colour = None
        for _ in range(_PLACEMENT_TRIES):
            candidate = Instance(
                category=category, colour=colour,
                cx=float(rng.uniform(*spec.position_range) * w),
                cy=float(rng.uniform(*spec.position_range) * h),
                radius=float(rng.uniform(*spec.size_range) * side / 2),
                rotation=float(rng.uniform(0, 2 * np.pi)),
            )
            mask = candidate.mask(h, w)
            if _placement_ok(mask, masks, spec):
                placed.append(candidate)
                masks.append(mask)
                break
    background = str(spec.backgrounds[rng.integers(len(spec.backgrounds))])
    if rng.random() < spec.background_unspecified:
        background = None
    return Layout(height=h, width=w, background=background, instances=tuple(placed),
                  texture_seed=int(rng.integers(2**31)))


def _placement_ok(mask: np.ndarray, earlier: list[np.ndarray], spec: LayoutSpec) -> bool:
    """A new object may not hide too much of any earlier one (nor be a sliver itself)."""
    if mask.sum() < 12:
        return False
    covered = mask.copy()  # everything drawn after earlier[j], the new object included
    for other in reversed(earlier):
        if not spec.allow_occlusion and (mask & other).any():
            return False
        if (other & ~covered).sum() < spec.min_visible * other.sum():
            return False
        covered |= other
    return True


def render_scene(layout: Layout, background: str = "plain",
                 colour_rng: np.random.Generator | None = None) -> np.ndarray:
    """Render a *real* procedural scene for a layout: (H, W, 3) uint8.

    Used for training data and as the reference set; instances with an unspecified colour and an
    unspecified background are filled from ``colour_rng`` / ``background``.
    """
    rng = np.random.default_rng(layout.texture_seed)
    colour_rng = colour_rng or rng
    image = render_background(layout.background or background, rng, layout.height, layout.width)
    instance_map = layout.instance_map
    for i, inst in enumerate(layout.instances):
        colour = inst.colour or sample_colour(inst.category, list(PALETTE), {}, colour_rng)
        rgb = np.asarray(PALETTE[colour], dtype=np.float64) + rng.normal(0, _OBJECT_JITTER, 3)
        image[instance_map == i + 1] = rgb
    image = image + rng.normal(0, _PIXEL_NOISE, image.shape)
    return np.clip(np.rint(image), 0, 255).astype(np.uint8)
