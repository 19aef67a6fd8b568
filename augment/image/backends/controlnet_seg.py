"""``controlnet-seg``: the layout painted in the ControlNet's palette (``augment.image.palettes``)
plus a caption prompt, through ``StableDiffusionControlNetPipeline`` (Zhang et al. 2023). Labels:
the layout's masks."""

from __future__ import annotations

import numpy as np
import torch
from diffusers import StableDiffusionControlNetPipeline

from augment.config.image import ControlNetSegSpec, ImageSamplerSpec
from augment.image.backends.stable_diffusion import (SDBackend, batch_size_hw, common_kwargs,
                                                     decode_guarded, load_sd_backend)
from augment.image.layout_types import Layout
from augment.image.palettes import class_colours, control_map
from augment.image.prompts import scene_prompt


def control_images(layouts: list[Layout], spec: ControlNetSegSpec) -> torch.Tensor:
    """The ControlNet condition: (B, 3, H, W) float32 in [0, 1], each instance's visible pixels in
    its class colour, the rest in ``spec.palette_background``."""
    classes = sorted({inst.category for layout in layouts for inst in layout.instances})
    colours = class_colours(classes, spec.palette)
    maps = [control_map(layout.instance_map, [i.category for i in layout.instances], colours,
                        spec.palette_background) for layout in layouts]
    return torch.from_numpy(np.stack(maps)).permute(0, 3, 1, 2).float() / 255.0


def render(pipe, layouts: list[Layout], sampler: ImageSamplerSpec, seeds: list[int],
           spec: ControlNetSegSpec) -> np.ndarray:
    height, width = batch_size_hw(layouts)
    latents = pipe(prompt=[scene_prompt(layout, sampler) for layout in layouts],
                   image=control_images(layouts, spec),
                   controlnet_conditioning_scale=sampler.controlnet_conditioning_scale,
                   guess_mode=sampler.guess_mode,
                   **common_kwargs(pipe, sampler, seeds, height, width)).images
    return decode_guarded(pipe, latents)


def load(spec: ControlNetSegSpec) -> SDBackend:
    return load_sd_backend(spec, StableDiffusionControlNetPipeline, render, scene_prompt,
                           controlnet=spec.controlnet)
