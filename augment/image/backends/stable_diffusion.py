"""The Stable Diffusion family: a layout becomes a condition of a pretrained model.

Each backend (``controlnet_seg``, ``gligen``, ``inpaint_paste``) is one module with a renderer and a
prompt function; this module loads their pipelines and holds what they share. A backend's
``render(layouts, sampler, seeds, force_fp32)`` returns float32 (B, H, W, 3) in [0, 1], with NaN
rows for samples whose latents or pixels were not finite (e.g. fp16 overflow):
``augment.core.backends.render_guarded`` retries those in float32. Noise is drawn on the CPU from
one generator per sample, so a sample is reproducible alone and the noise does not depend on the
GPU. Weights load from safetensors only; the safety checker is not loaded.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from diffusers import ControlNetModel
from diffusers.models.attention_processor import AttnProcessor2_0
from diffusers.utils.torch_utils import randn_tensor

from augment.config.image import ImageSamplerSpec, StableDiffusionSpec
from augment.core.devices import resolve_device, resolve_dtype
from augment.core.io import sha256_text
from augment.core.pipeline_backend import PipelineBackend
from augment.core.weights import resolve_model_path, weights_hash
from augment.image.layout_types import Layout

COMPONENTS = ("unet", "vae", "text_encoder")

Renderer = Callable[[object, list[Layout], ImageSamplerSpec, list[int], StableDiffusionSpec],
                    np.ndarray]


@dataclass(kw_only=True)
class SDBackend(PipelineBackend):
    """A loaded SD-family pipeline, its renderer and prompt, and how to rebuild it."""

    spec: StableDiffusionSpec
    pipeline_class: type
    renderer: Renderer
    prompter: Callable[[Layout, ImageSamplerSpec], str]
    folder: Path
    controlnet_folder: Path | None

    def render(self, layouts: list[Layout], sampler: ImageSamplerSpec, seeds: list[int],
               force_fp32: bool = False) -> np.ndarray:
        """Images (B, H, W, 3) float32 in [0, 1] for ``layouts``; NaN rows for failed samples."""
        # One render at a time: the scheduler and GLIGEN's fuser switch are pipeline state, and
        # the GPU is the bottleneck anyway (shards in other threads still write files meanwhile).
        with self.lock:
            pipe = self.pipe_for(force_fp32, sampler.scheduler)
            return self.renderer(pipe, layouts, sampler, seeds, self.spec)

    def prompt(self, layout: Layout, sampler: ImageSamplerSpec) -> str:
        """The text the backend was prompted with for ``layout``."""
        return self.prompter(layout, sampler)

    def rebuild(self, dtype: torch.dtype):
        return build_pipeline(self.pipeline_class, self.spec, self.folder, self.controlnet_folder,
                              dtype, self.device)


def load_sd_backend(spec: StableDiffusionSpec, pipeline_class: type, renderer: Renderer,
                    prompter: Callable[[Layout, ImageSamplerSpec], str],
                    controlnet: str | None = None) -> SDBackend:
    """Load ``pipeline_class`` from ``spec.path`` (and a ControlNet from ``controlnet``): hub ids
    resolve through the local Hugging Face cache; offline, a missing model is an error naming it."""
    folder = resolve_model_path(spec.path, None)
    controlnet_folder = (resolve_model_path(controlnet, None, "model.controlnet")
                         if controlnet is not None else None)
    device = resolve_device(spec.device)
    dtype = resolve_dtype(spec.dtype, device)
    pipe = build_pipeline(pipeline_class, spec, folder, controlnet_folder, dtype, device)
    model_id = spec.path if controlnet is None else f"{spec.path} + {controlnet}"
    return SDBackend(spec=spec, pipeline_class=pipeline_class, renderer=renderer,
                     prompter=prompter, pipe=pipe, folder=folder,
                     controlnet_folder=controlnet_folder, model_id=model_id,
                     weights=components_hash(folder, controlnet_folder), device=device, dtype=dtype)


def components_hash(folder: Path, controlnet_folder: Path | None) -> str:
    """16 hex digits over the weights this backend loads (UNet, VAE, text encoder, ControlNet)."""
    parts = [f"{name}:{weights_hash(folder / name)}" for name in COMPONENTS]
    if controlnet_folder is not None:
        parts.append(f"controlnet:{weights_hash(controlnet_folder)}")
    return sha256_text("\n".join(parts))[:16]


def build_pipeline(pipeline_class: type, spec: StableDiffusionSpec, folder: Path,
                   controlnet_folder: Path | None, dtype: torch.dtype, device: torch.device):
    """``pipeline_class`` from ``folder`` (and a ControlNet from ``controlnet_folder``) in ``dtype``
    on ``device``, without safety checker, optimised as ``spec`` asks (see ``optimise``)."""
    kwargs = {"dtype": dtype, "use_safetensors": True}
    try:
        if controlnet_folder is not None:
            kwargs["controlnet"] = ControlNetModel.from_pretrained(controlnet_folder, **kwargs)
        pipe = pipeline_class.from_pretrained(
            folder, safety_checker=None, feature_extractor=None, requires_safety_checker=False,
            **kwargs)
    except (OSError, ValueError, TypeError) as exc:
        where = folder if controlnet_folder is None else f"{folder} and {controlnet_folder}"
        raise FileNotFoundError(f"cannot load {spec.backend} weights (safetensors) from {where}: "
                                f"{exc}") from exc
    pipe.set_progress_bar_config(disable=True)
    optimise(pipe, spec, device)
    return pipe


def optimise(pipe, spec: StableDiffusionSpec, device: torch.device) -> None:
    """SDPA attention (FlashAttention/memory-efficient kernels on a GPU) in every attention layer,
    a channels-last UNet, then the options of ``spec``: VAE slicing / tiling, model CPU offload
    (each model moves to the GPU while it runs) or placement on ``device``, ``torch.compile`` of
    the UNet (compiled lazily on the first call)."""
    for model in (pipe.unet, getattr(pipe, "controlnet", None)):
        if model is not None:
            model.set_attn_processor(AttnProcessor2_0())
    pipe.unet.to(memory_format=torch.channels_last)
    if spec.vae_slicing:
        pipe.vae.enable_slicing()
    if spec.vae_tiling:
        pipe.vae.enable_tiling()
    if spec.cpu_offload:
        pipe.enable_model_cpu_offload(device=device)
    else:
        pipe.to(device)
    if spec.compile_unet:
        pipe.unet.compile()


def generators(seeds: list[int]) -> list[torch.Generator]:
    return [torch.Generator("cpu").manual_seed(int(s)) for s in seeds]


def initial_noise(pipe, seeds: list[int], height: int, width: int,
                  temperature: float) -> torch.Tensor:
    """(B, 4, H / f, W / f) Gaussian latents, one CPU generator per sample, times the noise
    temperature; on the pipeline's device and dtype."""
    f = pipe.vae_scale_factor
    shape = (len(seeds), pipe.vae.config.latent_channels, height // f, width // f)
    noise = randn_tensor(shape, generator=generators(seeds), device=torch.device("cpu"),
                         dtype=torch.float32)
    return (noise * temperature).to(device=pipe._execution_device, dtype=pipe.unet.dtype)


@torch.no_grad()
def decode_guarded(pipe, latents: torch.Tensor) -> np.ndarray:
    """(B, 4, h, w) latents -> (B, H, W, 3) float32 in [0, 1]; a sample whose latents or decoded
    pixels hold NaN/inf comes back as a NaN row (clamping would hide an inf)."""
    vae = pipe.vae
    pixels = vae.decode(latents.to(vae.dtype) / vae.config.scaling_factor, return_dict=False)[0]
    pixels = pixels.float()
    bad = ~(torch.isfinite(latents.float()).flatten(1).all(1)
            & torch.isfinite(pixels).flatten(1).all(1))
    images = (pixels / 2 + 0.5).clamp(0, 1).permute(0, 2, 3, 1).cpu().numpy()
    images[bad.cpu().numpy()] = np.nan
    return images


def common_kwargs(pipe, sampler: SamplerSpec, seeds: list[int], height: int, width: int) -> dict:
    negative = [sampler.negative_prompt] * len(seeds) if sampler.negative_prompt else None
    return {"height": height, "width": width, "num_inference_steps": sampler.steps,
            "guidance_scale": sampler.guidance, "negative_prompt": negative, "eta": sampler.eta,
            "generator": generators(seeds), "output_type": "latent",
            "latents": initial_noise(pipe, seeds, height, width, sampler.noise_temperature)}


def batch_size_hw(layouts: list[Layout]) -> tuple[int, int]:
    sizes = {(layout.height, layout.width) for layout in layouts}
    if len(sizes) != 1:
        raise ValueError(f"a batch must share one image size, got {sorted(sizes)}")
    return sizes.pop()
