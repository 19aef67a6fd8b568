"""``shapes-tiny``: the embedded layout-to-image diffusion model
(``augment.image.pipelines.shapes_tiny``), or any folder trained by ``synthmill train shapes``."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from augment.config.base import SamplerSpec
from augment.config.image import ShapesTinySpec
from augment.core.devices import resolve_device, resolve_dtype
from augment.core.schedulers import make_scheduler
from augment.core.weights import resolve_model_path, weights_hash
from augment.image.layout_types import Layout
from augment.image.pipelines.shapes_tiny import ShapesTinyPipeline, encode_layouts

EMBEDDED_SHAPES_TINY = Path(__file__).resolve().parents[2] / "assets" / "shapes-tiny"


@dataclass
class ShapesTinyBackend:
    """A loaded shapes-tiny pipeline (and, on demand, a float32 copy for the NaN retry)."""

    pipe: ShapesTinyPipeline
    model_id: str
    weights: str
    device: torch.device
    dtype: torch.dtype
    _fp32: ShapesTinyPipeline | None = field(default=None, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def render(self, layouts: list[Layout], sampler: SamplerSpec, seeds: list[int],
               force_fp32: bool = False) -> np.ndarray:
        """Images (B, H, W, 3) float32 in [0, 1] for ``layouts``; one generator per sample."""
        base = self._fp32_pipe() if force_fp32 else self.pipe
        # a private scheduler per call: schedulers hold per-run state and shards may share the unet
        pipe = ShapesTinyPipeline(unet=base.unet, scheduler=make_scheduler(sampler.scheduler,
                                                                           base.scheduler))
        pipe.set_progress_bar_config(disable=True)
        generators = [torch.Generator(self.device).manual_seed(s) for s in seeds]
        out = pipe(encode_layouts(layouts), num_inference_steps=sampler.steps,
                   guidance_scale=sampler.guidance, eta=sampler.eta,
                   noise_temperature=sampler.noise_temperature, generator=generators,
                   output_type="pt")
        return out.images.permute(0, 2, 3, 1).float().cpu().numpy()

    def prompt(self, layout: Layout, sampler: SamplerSpec) -> None:
        """The embedded models take no text prompt."""
        return None

    def _fp32_pipe(self) -> ShapesTinyPipeline:
        if self.dtype == torch.float32:
            return self.pipe
        with self._lock:
            if self._fp32 is None:
                self._fp32 = ShapesTinyPipeline.from_pretrained(self.model_id, dtype=torch.float32)
                self._fp32.to(self.device)
            return self._fp32


def load(spec: ShapesTinySpec) -> ShapesTinyBackend:
    folder = resolve_model_path(spec.path, EMBEDDED_SHAPES_TINY)
    device = resolve_device(spec.device)
    dtype = resolve_dtype(spec.dtype, device)
    try:
        pipe = ShapesTinyPipeline.from_pretrained(folder, dtype=dtype)
    except (OSError, ValueError, EnvironmentError) as exc:
        raise FileNotFoundError(f"cannot load shapes-tiny weights from {folder}: {exc}") from exc
    pipe.to(device)
    pipe.unet.to(memory_format=torch.channels_last)  # ~25% faster convolutions on CPU
    return ShapesTinyBackend(pipe=pipe, model_id=str(folder), weights=weights_hash(folder),
                             device=device, dtype=dtype)
