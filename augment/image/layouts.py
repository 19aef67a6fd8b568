"""Layouts: the labels of a sample, drawn before any pixel exists.

``sample_layout(spec, seed, index)`` draws a ``Layout`` (instances with class, colour, geometry,
background, caption) from a layout spec with a per-sample seed derived from ``(seed, index)``, in
the manner of Scaper's declarative spec plus a record of the values actually drawn: the layout's
JSON holds every drawn value, and ``Layout.from_json`` rebuilds the exact masks from it. The shapes
world's sampler is here; borrowed COCO layouts come from ``augment.image.coco_layouts``.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np

from augment.config.image import LayoutBase, ShapesLayoutSpec
from augment.core.seeds import sample_seeds
from augment.image.coco_layouts import load_coco_source, sample_coco_layout
from augment.image.layout_types import Instance, Layout
from augment.image.world import CLASSES, PALETTE, _OBJECT_JITTER, _PIXEL_NOISE, render_background, sample_colour

_PLACEMENT_TRIES = 30


def layout_categories(spec: LayoutBase) -> list[str]:
    """The dataset's category names; category id ``i + 1`` is ``categories[i]``: the shapes
    world's classes, or the kept categories of a COCO file in COCO id order."""
    if spec.source == "coco":
        return list(load_coco_source(spec).categories)
    return list(CLASSES)


def sample_layout(spec: LayoutBase, seed: int, index: int) -> Layout:
    """Draw the layout of sample ``index`` of a run seeded with ``seed`` (deterministic): shapes,
    or a layout borrowed from a COCO file; with ``spec.background_images``, also the background
    image it is pasted on (``extra["background_image"]``)."""
    if spec.source == "coco":
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


def sample_shapes_layout(spec: ShapesLayoutSpec, seed: int, index: int) -> Layout:
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


def _placement_ok(mask: np.ndarray, earlier: list[np.ndarray], spec: ShapesLayoutSpec) -> bool:
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
