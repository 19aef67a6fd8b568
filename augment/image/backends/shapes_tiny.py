"""``shapes-tiny``: the embedded layout-to-image diffusion model
(``augment.image.pipelines.shapes_tiny``), or any folder trained by ``synthmill train shapes``."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from augment.config.base import SamplerSpec
from augment.config.image import ShapesTinySpec
from augment.core.embedded_backend import EmbeddedBackend
from augment.image.layout_types import Layout
from augment.image.pipelines.shapes_tiny import ShapesTinyPipeline, encode_layouts

EMBEDDED_SHAPES_TINY = Path(__file__).resolve().parents[2] / "assets" / "shapes-tiny"


class ShapesTinyBackend(EmbeddedBackend):
    """A loaded shapes-tiny pipeline (and, on demand, a float32 copy for the NaN retry)."""

    def render(self, layouts: list[Layout], sampler: SamplerSpec, seeds: list[int],
               force_fp32: bool = False) -> np.ndarray:
        """Images (B, H, W, 3) float32 in [0, 1] for ``layouts``; one generator per sample."""
        pipe = self.sampling_pipe(sampler.scheduler, force_fp32)
        generators = [torch.Generator(self.device).manual_seed(s) for s in seeds]
        out = pipe(encode_layouts(layouts), num_inference_steps=sampler.steps,
                   guidance_scale=sampler.guidance, eta=sampler.eta,
                   noise_temperature=sampler.noise_temperature, generator=generators,
                   output_type="pt")
        return out.images.permute(0, 2, 3, 1).float().cpu().numpy()


def load(spec: ShapesTinySpec) -> ShapesTinyBackend:
    """The shapes-tiny backend of ``spec`` (``spec.path`` None: the embedded weights)."""
    return ShapesTinyBackend.load(ShapesTinyPipeline, spec, EMBEDDED_SHAPES_TINY, "shapes-tiny")
