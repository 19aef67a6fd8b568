"""``shapes-world``: the procedural renderer as a backend, so real reference scenes are made by the
same dataset flow (same folder contract, exact labels) as generated ones.

Layouts with an unspecified colour or background are filled in from the world's own distribution
(``colour_bias`` of the layout spec is not applied here: pass it in the layout spec instead).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from augment.config.base import SamplerSpec
from augment.config.image import ShapesWorldSpec
from augment.image.layout_types import Layout
from augment.image.layouts import render_scene


@dataclass
class ShapesWorldBackend:
    """Renders real scenes; ``seeds`` pick the colours left open by the layout."""

    model_id: str = "shapes-world (procedural renderer)"
    weights: str = "none"

    def render(self, layouts: list[Layout], sampler: SamplerSpec, seeds: list[int],
               force_fp32: bool = False) -> np.ndarray:
        images = [render_scene(layout, colour_rng=np.random.default_rng(seed))
                  for layout, seed in zip(layouts, seeds)]
        return np.stack(images).astype(np.float32) / 255.0

    def prompt(self, layout: Layout, sampler: SamplerSpec) -> None:
        return None


def load(spec: ShapesWorldSpec) -> ShapesWorldBackend:
    return ShapesWorldBackend()
