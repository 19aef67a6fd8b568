"""``gligen``: one box and phrase per visible instance, through ``BatchedGLIGENPipeline`` (Li et al.
2023). Labels: boxes only (the box given is the box labelled; GLIGEN fills it freely)."""

from __future__ import annotations

import numpy as np

from augment.config.image import GligenSpec, ImageSamplerSpec
from augment.image.backends.stable_diffusion import (SDBackend, batch_size_hw, common_kwargs,
                                                     decode_guarded, load_sd_backend)
from augment.image.dataset import mask_xyxy
from augment.image.layout_types import Layout
from augment.image.pipelines.gligen_batched import BatchedGLIGENPipeline
from augment.image.prompts import scene_prompt


def grounding(layout: Layout) -> tuple[list[str], list[list[float]]]:
    """GLIGEN phrases and normalised xyxy boxes: the extent of each visible instance, which is
    also the box the dataset labels."""
    phrases, boxes = [], []
    for k, inst in enumerate(layout.instances):
        mask = layout.instance_map == k + 1
        if mask.any():
            x1, y1, x2, y2 = mask_xyxy(mask)
            phrases.append(inst.phrase)
            boxes.append([x1 / layout.width, y1 / layout.height, x2 / layout.width,
                          y2 / layout.height])
    return phrases, boxes


def render(pipe, layouts: list[Layout], sampler: ImageSamplerSpec, seeds: list[int],
           spec: GligenSpec) -> np.ndarray:
    height, width = batch_size_hw(layouts)
    phrases, boxes = zip(*(grounding(layout) for layout in layouts))
    latents = pipe(prompt=[scene_prompt(layout, sampler) for layout in layouts],
                   gligen_phrases=list(phrases), gligen_boxes=list(boxes),
                   gligen_scheduled_sampling_beta=sampler.gligen_scheduled_sampling_beta,
                   **common_kwargs(pipe, sampler, seeds, height, width)).images
    return decode_guarded(pipe, latents)


def load(spec: GligenSpec) -> SDBackend:
    return load_sd_backend(spec, BatchedGLIGENPipeline, render, scene_prompt)
