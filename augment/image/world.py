"""The procedural shapes world: scenes whose ground truth is known by construction.

A scene is a textured, low-saturation background with 1..N flat-coloured shapes drawn in order, so
later shapes occlude earlier ones. Every label (class, colour, instance mask, box) is computed from
the scene's parameters, never estimated from pixels.

Planted skew (the known answer for the bias audit)
-------------------------------------------------
The *training* distribution of the embedded generator is not colour-neutral: ``PLANTED_SKEW``
makes circles red with probability 0.6 (the other colours share the rest uniformly), while every
other class draws its colour uniformly. The generator is trained with the colour condition dropped
for some instances, so when a layout leaves a circle's colour unspecified the model reproduces that
prior. A correct bias audit of "colour given shape" must find circles skewed to red and no skew for
the other shapes. Generation-time layouts (``LayoutSpec`` with no ``colour_bias``) are uniform.
"""

from __future__ import annotations

import numpy as np

CLASSES: tuple[str, ...] = ("circle", "square", "triangle", "star", "cross")
"""Shape classes; category id = index + 1 (0 is background in semantic masks)."""

PALETTE: dict[str, tuple[int, int, int]] = {
    "red": (215, 40, 40),
    "orange": (240, 135, 25),
    "yellow": (230, 210, 35),
    "green": (35, 165, 65),
    "blue": (40, 80, 220),
    "purple": (145, 55, 185),
}
"""Object colours: saturated, well apart in hue, so colour is unambiguous at 64x64."""

COLOURS: tuple[str, ...] = tuple(PALETTE)

BACKGROUNDS: tuple[str, ...] = ("plain", "stripes", "gradient", "noise")
"""Background textures; all are low-saturation so objects stand out by colour."""

BACKGROUND_PHRASES = {
    "plain": "a plain background",
    "stripes": "a striped background",
    "gradient": "a gradient background",
    "noise": "a noisy background",
}

PLANTED_SKEW: dict[str, dict[str, float]] = {"circle": {"red": 0.6}}
"""Colour skew of the embedded generator's training data: P(colour | class) for listed pairs;
the remaining probability mass is spread uniformly over the other colours."""

_OBJECT_JITTER = 10.0  # per-object colour jitter (std, 0-255 scale): real objects are not all one RGB
_PIXEL_NOISE = 3.0  # per-pixel sensor-like noise (std) over the whole image


def _pixel_grid(height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel-centre coordinates ``(ys, xs)``, each (H, W) float64."""
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float64)
    return ys + 0.5, xs + 0.5


def _polygon_vertices(kind: str, radius: float, rotation: float) -> np.ndarray:
    """Vertices (V, 2) as (x, y) offsets from the centre for the polygonal shapes."""
    if kind == "square":
        angles = np.pi / 4 + np.arange(4) * np.pi / 2
        radii = np.full(4, radius)
    elif kind == "triangle":
        angles = -np.pi / 2 + np.arange(3) * 2 * np.pi / 3
        radii = np.full(3, radius)
    elif kind == "star":
        angles = -np.pi / 2 + np.arange(10) * np.pi / 5
        radii = np.where(np.arange(10) % 2 == 0, radius, radius * 0.45)
    elif kind == "cross":
        a, b = radius * 0.95, radius * 0.34  # arm half-length, arm half-width
        pts = [(b, a), (b, b), (a, b), (a, -b), (b, -b), (b, -a),
               (-b, -a), (-b, -b), (-a, -b), (-a, b), (-b, b), (-b, a)]
        xy = np.asarray(pts, dtype=np.float64)
        c, s = np.cos(rotation), np.sin(rotation)
        return xy @ np.array([[c, s], [-s, c]])
    else:
        raise ValueError(f"unknown polygonal shape {kind!r}")
    angles = angles + rotation
    return np.stack([radii * np.cos(angles), radii * np.sin(angles)], axis=1)


def _inside_polygon(xs: np.ndarray, ys: np.ndarray, vertices: np.ndarray) -> np.ndarray:
    """Even-odd point-in-polygon test, vectorised over pixels. Returns a bool array like ``xs``."""
    inside = np.zeros(xs.shape, dtype=bool)
    v0 = vertices
    v1 = np.roll(vertices, -1, axis=0)
    for (x0, y0), (x1, y1) in zip(v0, v1):
        if y0 == y1:
            continue
        crosses = (y0 > ys) != (y1 > ys)
        x_at = x0 + (ys - y0) * (x1 - x0) / (y1 - y0)
        inside ^= crosses & (xs < x_at)
    return inside


def shape_mask(kind: str, cx: float, cy: float, radius: float, rotation: float,
               height: int, width: int) -> np.ndarray:
    """Rasterise one shape (no anti-aliasing, so the mask is exactly the drawn pixels).

    ``(cx, cy)`` is the centre in pixels, ``radius`` the circumradius in pixels, ``rotation`` in
    radians. Returns a bool mask (H, W). Only the pixels of the shape's bounding box are tested
    (no pixel outside it can be inside), with the same per-pixel arithmetic as a full-image test.
    """
    if kind == "circle":
        vertices = None
        x_lo, x_hi, y_lo, y_hi = cx - radius, cx + radius, cy - radius, cy + radius
    else:
        vertices = _polygon_vertices(kind, radius, rotation) + np.array([cx, cy])
        (x_lo, y_lo), (x_hi, y_hi) = vertices.min(0), vertices.max(0)
    # pixel centres i + 0.5 in [lo, hi]: i from floor(lo - 0.5) to ceil(hi - 0.5), one pixel spare
    r0, r1 = max(int(np.floor(y_lo - 0.5)) - 1, 0), min(int(np.ceil(y_hi - 0.5)) + 2, height)
    c0, c1 = max(int(np.floor(x_lo - 0.5)) - 1, 0), min(int(np.ceil(x_hi - 0.5)) + 2, width)
    mask = np.zeros((height, width), dtype=bool)
    if r0 >= r1 or c0 >= c1:
        return mask
    ys, xs = np.mgrid[r0:r1, c0:c1].astype(np.float64)
    ys, xs = ys + 0.5, xs + 0.5
    if vertices is None:
        mask[r0:r1, c0:c1] = (xs - cx) ** 2 + (ys - cy) ** 2 <= radius**2
    else:
        mask[r0:r1, c0:c1] = _inside_polygon(xs, ys, vertices)
    return mask


def _tint(rng: np.random.Generator) -> np.ndarray:
    """A low-saturation background colour (3,) float in 0..255."""
    grey = rng.uniform(70, 200)
    return np.clip(grey + rng.normal(0, 8, size=3), 0, 255)


def render_background(kind: str, rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """Background texture (H, W, 3) float64 in 0..255, low saturation by construction."""
    ys, xs = _pixel_grid(height, width)
    a, b = _tint(rng), _tint(rng)
    if kind == "plain":
        return np.broadcast_to(a, (height, width, 3)).copy()
    if kind == "stripes":
        theta = rng.uniform(0, np.pi)
        period = rng.uniform(6, 14)
        phase = (xs * np.cos(theta) + ys * np.sin(theta)) / period
        if np.abs(a - b).mean() < 35:  # keep stripes visible
            b = np.clip(a + np.where(a.mean() > 128, -50, 50), 0, 255)
        on = (np.floor(phase) % 2 == 0)[..., None]
        return np.where(on, a, b)
    if kind == "gradient":
        theta = rng.uniform(0, 2 * np.pi)
        t = (xs - width / 2) * np.cos(theta) + (ys - height / 2) * np.sin(theta)
        t = (t - t.min()) / max(np.ptp(t), 1e-9)
        return a * (1 - t[..., None]) + b * t[..., None]
    if kind == "noise":
        coarse = rng.normal(0, 1, size=(height // 8 + 2, width // 8 + 2))
        yi = np.clip(ys / 8, 0, coarse.shape[0] - 1.001)
        xi = np.clip(xs / 8, 0, coarse.shape[1] - 1.001)
        y0, x0 = yi.astype(int), xi.astype(int)
        fy, fx = yi - y0, xi - x0
        smooth = (coarse[y0, x0] * (1 - fy) * (1 - fx) + coarse[y0 + 1, x0] * fy * (1 - fx)
                  + coarse[y0, x0 + 1] * (1 - fy) * fx + coarse[y0 + 1, x0 + 1] * fy * fx)
        return np.clip(a + 28 * smooth[..., None], 0, 255)
    raise ValueError(f"unknown background {kind!r}; expected one of {BACKGROUNDS}")


def sample_colour(category: str, colours: tuple[str, ...] | list[str],
                  colour_bias: dict[str, dict[str, float]], rng: np.random.Generator) -> str:
    """Draw an instance colour: from ``colour_bias[category]`` where given, else uniformly.

    Listed colours take their probability; the rest of the mass is spread evenly over the colours
    that are not listed.
    """
    bias = colour_bias.get(category, {})
    probs = np.array([bias.get(c, np.nan) for c in colours], dtype=np.float64)
    rest = 1.0 - np.nansum(probs)
    unlisted = np.isnan(probs)
    if unlisted.any():
        probs[unlisted] = max(rest, 0.0) / unlisted.sum()
    probs = probs / probs.sum()
    return str(colours[rng.choice(len(colours), p=probs)])
