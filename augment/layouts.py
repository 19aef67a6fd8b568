"""Layouts: the labels of a sample, drawn before any pixel exists.

``sample_layout(spec, seed, index)`` draws a ``Layout`` (instances with class, colour, geometry,
background, caption) from a ``LayoutSpec`` with a per-sample seed derived from ``(seed, index)``,
in the manner of Scaper's declarative spec plus a record of the values actually drawn: the layout's
JSON holds every drawn value, and ``Layout.from_json`` rebuilds the exact masks from it.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from functools import cached_property

import numpy as np

from augment.config import LayoutSpec
from augment.shapes.world import (BACKGROUND_PHRASES, CLASSES, PALETTE, _OBJECT_JITTER, _PIXEL_NOISE,
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

    def mask(self, height: int, width: int) -> np.ndarray:
        """Full (unoccluded) bool mask (H, W)."""
        return shape_mask(self.category, self.cx, self.cy, self.radius, self.rotation, height, width)


@dataclass(frozen=True)
class Layout:
    """A scene description; instances are in drawing order (later ones occlude earlier ones)."""

    height: int
    width: int
    background: str | None
    instances: tuple[Instance, ...]
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
        """(H, W) uint8 class index per pixel (0 = background)."""
        lut = np.array([0] + [inst.category_id for inst in self.instances], dtype=np.uint8)
        return lut[self.instance_map]

    def visible_masks(self) -> list[np.ndarray]:
        """Bool (H, W) visible mask of each instance, after occlusion (may be empty)."""
        return [self.instance_map == i + 1 for i in range(len(self.instances))]

    @property
    def caption(self) -> str:
        """E.g. "a red circle and a blue triangle on a striped background"."""
        phrases = [_with_article(f"{inst.colour + ' ' if inst.colour else ''}{inst.category}")
                   for inst in self.instances]
        text = phrases[0] if len(phrases) == 1 else ", ".join(phrases[:-1]) + " and " + phrases[-1]
        if self.background:
            text += " on " + BACKGROUND_PHRASES[self.background]
        return text

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "Layout":
        raw = json.loads(text)
        raw["instances"] = tuple(Instance(**inst) for inst in raw["instances"])
        return cls(**raw)


def _with_article(noun_phrase: str) -> str:
    return ("an " if noun_phrase[0] in "aeiou" else "a ") + noun_phrase


def sample_seeds(seed: int, index: int) -> tuple[int, int]:
    """Two independent 63-bit seeds (layout stream, noise stream) for sample ``index`` of a run."""
    layout_state, noise_state = np.random.SeedSequence([seed, index]).spawn(2)
    return (int(layout_state.generate_state(1, np.uint64)[0] >> np.uint64(1)),
            int(noise_state.generate_state(1, np.uint64)[0] >> np.uint64(1)))


def sample_layout(spec: LayoutSpec, seed: int, index: int) -> Layout:
    """Draw the layout of sample ``index`` of a run seeded with ``seed`` (deterministic)."""
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
