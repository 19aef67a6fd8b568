"""Real procedural scenes as compact arrays, rendered in parallel, for training the embedded models.

Scene ``i`` of a seed is always the same scene, whichever worker renders it.
"""

from __future__ import annotations

import logging
import os
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass

import numpy as np

from augment.config.image import ShapesLayoutSpec
from augment.image.layouts import render_scene, sample_layout
from augment.image.world import BACKGROUNDS, COLOURS, PLANTED_SKEW

log = logging.getLogger(__name__)


def world_layout_spec(resolution: int, skewed: bool = True) -> ShapesLayoutSpec:
    """The training distribution of the shapes world (with the documented ``PLANTED_SKEW``)."""
    return ShapesLayoutSpec(height=resolution, width=resolution,
                      colour_bias=PLANTED_SKEW if skewed else {})


@dataclass
class SceneArrays:
    """N scenes with up to M instances each.

    images (N, 3, H, W) uint8; instance (N, H, W) uint8 (0 = background, k = slot k-1);
    classes (N, M) uint8 category id per slot (0 = empty); colours (N, M) uint8 ``1 + colour
    index`` (0 = empty); background (N,) uint8 ``1 + background index``.
    """

    images: np.ndarray
    instance: np.ndarray
    classes: np.ndarray
    colours: np.ndarray
    background: np.ndarray

    def __len__(self) -> int:
        return len(self.images)

    def semantic(self) -> np.ndarray:
        """(N, H, W) uint8 class index per pixel."""
        lut = np.concatenate([np.zeros((len(self), 1), np.uint8), self.classes], axis=1)
        return np.take_along_axis(lut, self.instance.reshape(len(self), -1).astype(np.int64),
                                  axis=1).reshape(self.instance.shape)


def render_scenes(spec: ShapesLayoutSpec, seed: int, start: int, count: int) -> SceneArrays:
    """Render scenes ``start .. start+count-1`` of the world seeded with ``seed``."""
    m = spec.objects_per_image[1]
    h, w = spec.height, spec.width
    out = SceneArrays(np.zeros((count, 3, h, w), np.uint8), np.zeros((count, h, w), np.uint8),
                      np.zeros((count, m), np.uint8), np.zeros((count, m), np.uint8),
                      np.zeros((count,), np.uint8))
    for j in range(count):
        layout = sample_layout(spec, seed, start + j)
        out.images[j] = render_scene(layout).transpose(2, 0, 1)
        out.instance[j] = layout.instance_map
        for k, inst in enumerate(layout.instances):
            out.classes[j, k] = inst.category_id
            out.colours[j, k] = 1 + COLOURS.index(inst.colour)
        out.background[j] = 1 + BACKGROUNDS.index(layout.background)
    return out


def render_scenes_parallel(spec: ShapesLayoutSpec, seed: int, count: int,
                           workers: int | None = None, chunk: int = 2000) -> SceneArrays:
    """``render_scenes(spec, seed, 0, count)`` split over processes; same result as serial."""
    workers = workers or os.cpu_count() or 1
    starts = list(range(0, count, chunk))
    sizes = [min(chunk, count - s) for s in starts]
    if workers == 1 or len(starts) == 1:
        parts = [render_scenes(spec, seed, s, n) for s, n in zip(starts, sizes)]
    else:
        with ProcessPoolExecutor(workers) as pool:
            parts = list(pool.map(render_scenes, [spec] * len(starts), [seed] * len(starts),
                                  starts, sizes))
    return SceneArrays(*(np.concatenate([getattr(p, f) for p in parts]) for f in
                         ("images", "instance", "classes", "colours", "background")))


def render_training_scenes(spec: ShapesLayoutSpec, seed: int, count: int,
                           workers: int | None = None) -> SceneArrays:
    """``render_scenes_parallel``, logged: a trainer's scenes ``0 .. count-1`` of ``seed``.

    Call it before CUDA is initialised: the worker processes are forked.
    """
    start = time.time()
    log.info("rendering %d training scenes", count)
    scenes = render_scenes_parallel(spec, seed, count, workers)
    log.info("rendered %d scenes in %.1fs", count, time.time() - start)
    return scenes
