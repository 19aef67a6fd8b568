"""Stable-Diffusion-family backends: the layout becomes a condition of a pretrained model.

- ``controlnet-seg``: the layout painted in the ControlNet's palette (``augment.image.palettes``) plus a
  caption prompt, through ``StableDiffusionControlNetPipeline`` (Zhang et al. 2023). Labels: the
  layout's masks.
- ``gligen``: one box and phrase per visible instance, through ``BatchedGLIGENPipeline`` (Li et al.
  2023). Labels: boxes only (the box given is the box labelled; GLIGEN fills it freely).
- ``inpaint-paste``: a background (generated, or an image of ``layout.background_images``), then
  each instance, in drawing order, inpainted inside its full mask by
  ``StableDiffusionInpaintPipeline`` and pasted back exactly there, so later instances cover
  earlier ones where the layout says: labels are the masks used (cf. X-Paste, Zhao et al. 2023).

A backend's ``render(layouts, sampler, seeds, force_fp32)`` returns float32 (B, H, W, 3) in
[0, 1], with NaN rows for samples whose latents or pixels were not finite (e.g. fp16 overflow):
``augment.image.generate.render_guarded`` retries those in float32. Noise is drawn on the CPU from one
generator per sample, so a sample is reproducible alone and the noise does not depend on the GPU.
Weights load from safetensors only; the safety checker is not loaded.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from augment.image.backends import resolve_model_path, weights_hash
from augment.config import ModelSpec, SamplerSpec
from augment.image.dataset import mask_xyxy
from augment.core.devices import resolve_device, resolve_dtype
from augment.image.layouts import Layout
from augment.image.palettes import class_colours, control_map
from augment.image.prompts import background_prompt, instance_prompt, scene_prompt
from augment.core.schedulers import make_scheduler

log = logging.getLogger(__name__)

COMPONENTS = ("unet", "vae", "text_encoder")


@dataclass
class SDBackend:
    """A loaded SD-family pipeline and how to rebuild it in float32 for the NaN retry."""

    name: str
    pipe: object
    spec: ModelSpec
    folder: Path
    controlnet_folder: Path | None
    model_id: str
    weights: str
    device: torch.device
    dtype: torch.dtype
    _scheduler: object = field(default=None, repr=False)
    _fp32: object = field(default=None, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def __post_init__(self):
        self._scheduler = self.pipe.scheduler  # the model's own noise schedule

    def render(self, layouts: list[Layout], sampler: SamplerSpec, seeds: list[int],
               force_fp32: bool = False) -> np.ndarray:
        """Images (B, H, W, 3) float32 in [0, 1] for ``layouts``; NaN rows for failed samples."""
        # One render at a time: the scheduler and GLIGEN's fuser switch are pipeline state, and
        # the GPU is the bottleneck anyway (shards in other threads still write files meanwhile).
        with self._lock:
            pipe = self._fp32_pipe() if force_fp32 else self.pipe
            pipe.scheduler = make_scheduler(sampler.scheduler, self._scheduler)
            return RENDERERS[self.name](pipe, layouts, sampler, seeds, self.spec)

    def _fp32_pipe(self):
        if self.dtype == torch.float32:
            return self.pipe
        if self._fp32 is None:
            log.info("loading a float32 copy of %s for the NaN retry", self.model_id)
            self._fp32 = build_pipeline(self.name, self.folder, self.controlnet_folder, self.spec,
                                        torch.float32, self.device)
        return self._fp32


def load_sd_backend(spec: ModelSpec) -> SDBackend:
    """Load ``spec.backend`` from ``spec.path`` (and ``spec.controlnet``): hub ids resolve through
    the local Hugging Face cache; offline, a missing model is an error naming it."""
    folder = resolve_model_path(spec.path, None)
    controlnet_folder = (resolve_model_path(spec.controlnet, None, "model.controlnet")
                         if spec.backend == "controlnet-seg" else None)
    device = resolve_device(spec.device)
    dtype = resolve_dtype(spec.dtype, device)
    pipe = build_pipeline(spec.backend, folder, controlnet_folder, spec, dtype, device)
    model_id = spec.path if controlnet_folder is None else f"{spec.path} + {spec.controlnet}"
    return SDBackend(spec.backend, pipe, spec, folder, controlnet_folder, model_id,
                     components_hash(folder, controlnet_folder), device, dtype)


def components_hash(folder: Path, controlnet_folder: Path | None) -> str:
    """16 hex digits over the weights this backend loads (UNet, VAE, text encoder, ControlNet)."""
    parts = [f"{name}:{weights_hash(folder / name)}" for name in COMPONENTS]
    if controlnet_folder is not None:
        parts.append(f"controlnet:{weights_hash(controlnet_folder)}")
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]


def _pipeline_class(name: str):
    from diffusers import StableDiffusionControlNetPipeline, StableDiffusionInpaintPipeline

    from augment.image.pipelines.gligen_batched import BatchedGLIGENPipeline

    return {"controlnet-seg": StableDiffusionControlNetPipeline, "gligen": BatchedGLIGENPipeline,
            "inpaint-paste": StableDiffusionInpaintPipeline}[name]


def build_pipeline(name: str, folder: Path, controlnet_folder: Path | None, spec: ModelSpec,
                   dtype: torch.dtype, device: torch.device):
    """The diffusers pipeline of backend ``name`` in ``dtype`` on ``device``, optimised as
    ``spec`` asks (see ``optimise``)."""
    from diffusers import ControlNetModel

    kwargs = {"dtype": dtype, "use_safetensors": True}
    try:
        if controlnet_folder is not None:
            kwargs["controlnet"] = ControlNetModel.from_pretrained(controlnet_folder, **kwargs)
        pipe = _pipeline_class(name).from_pretrained(
            folder, safety_checker=None, feature_extractor=None, requires_safety_checker=False,
            **kwargs)
    except (OSError, ValueError, TypeError) as exc:
        where = folder if controlnet_folder is None else f"{folder} and {controlnet_folder}"
        raise FileNotFoundError(f"cannot load {name} weights (safetensors) from {where}: "
                                f"{exc}") from exc
    pipe.set_progress_bar_config(disable=True)
    optimise(pipe, spec, device)
    return pipe


def optimise(pipe, spec: ModelSpec, device: torch.device) -> None:
    """SDPA attention (FlashAttention/memory-efficient kernels on a GPU) in every attention layer,
    a channels-last UNet, then the options of ``spec``: VAE slicing / tiling, model CPU offload
    (each model moves to the GPU while it runs) or placement on ``device``, ``torch.compile`` of
    the UNet (compiled lazily on the first call)."""
    from diffusers.models.attention_processor import AttnProcessor2_0

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
    from diffusers.utils.torch_utils import randn_tensor

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


def _common_kwargs(pipe, sampler: SamplerSpec, seeds: list[int], height: int, width: int) -> dict:
    negative = [sampler.negative_prompt] * len(seeds) if sampler.negative_prompt else None
    return {"height": height, "width": width, "num_inference_steps": sampler.steps,
            "guidance_scale": sampler.guidance, "negative_prompt": negative, "eta": sampler.eta,
            "generator": generators(seeds), "output_type": "latent",
            "latents": initial_noise(pipe, seeds, height, width, sampler.noise_temperature)}


def _size(layouts: list[Layout]) -> tuple[int, int]:
    sizes = {(layout.height, layout.width) for layout in layouts}
    if len(sizes) != 1:
        raise ValueError(f"a batch must share one image size, got {sorted(sizes)}")
    return sizes.pop()


def control_images(layouts: list[Layout], spec: ModelSpec) -> torch.Tensor:
    """The ControlNet condition: (B, 3, H, W) float32 in [0, 1], each instance's visible pixels in
    its class colour, the rest in ``spec.palette_background``."""
    classes = sorted({inst.category for layout in layouts for inst in layout.instances})
    colours = class_colours(classes, spec.palette)
    maps = [control_map(layout.instance_map, [i.category for i in layout.instances], colours,
                        spec.palette_background) for layout in layouts]
    return torch.from_numpy(np.stack(maps)).permute(0, 3, 1, 2).float() / 255.0


def render_controlnet(pipe, layouts: list[Layout], sampler: SamplerSpec, seeds: list[int],
                      spec: ModelSpec) -> np.ndarray:
    height, width = _size(layouts)
    latents = pipe(prompt=[scene_prompt(layout, sampler) for layout in layouts],
                   image=control_images(layouts, spec),
                   controlnet_conditioning_scale=sampler.controlnet_conditioning_scale,
                   guess_mode=sampler.guess_mode,
                   **_common_kwargs(pipe, sampler, seeds, height, width)).images
    return decode_guarded(pipe, latents)


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


def render_gligen(pipe, layouts: list[Layout], sampler: SamplerSpec, seeds: list[int],
                  spec: ModelSpec) -> np.ndarray:
    height, width = _size(layouts)
    phrases, boxes = zip(*(grounding(layout) for layout in layouts))
    latents = pipe(prompt=[scene_prompt(layout, sampler) for layout in layouts],
                   gligen_phrases=list(phrases), gligen_boxes=list(boxes),
                   gligen_scheduled_sampling_beta=sampler.gligen_scheduled_sampling_beta,
                   **_common_kwargs(pipe, sampler, seeds, height, width)).images
    return decode_guarded(pipe, latents)


def stage_seed(seed: int, stage: int) -> int:
    """The noise seed of inpainting stage ``stage`` (0 = background) of a sample."""
    if stage == 0:
        return seed
    state = np.random.SeedSequence([seed, stage]).generate_state(1, np.uint64)[0]
    return int(state >> np.uint64(1))


def inpaint(pipe, images: np.ndarray, masks: np.ndarray, prompts: list[str],
            seeds: list[int], sampler: SamplerSpec) -> np.ndarray:
    """Inpaint bool (R, H, W) ``masks`` of float (R, H, W, 3) ``images`` in [0, 1] ->
    (R, H, W, 3) float32, NaN rows for non-finite samples."""
    height, width = masks.shape[1:]
    latents = pipe(prompt=prompts,
                   image=torch.from_numpy(np.nan_to_num(images)).permute(0, 3, 1, 2).float(),
                   mask_image=torch.from_numpy(masks[:, None].astype(np.float32)), strength=1.0,
                   **_common_kwargs(pipe, sampler, seeds, height, width)).images
    return decode_guarded(pipe, latents)


def load_background(path: str, height: int, width: int) -> np.ndarray:
    """An image file -> (H, W, 3) float32 in [0, 1], resized (bicubic) to the layout's size."""
    try:
        with Image.open(path) as im:
            rgb = im.convert("RGB").resize((width, height), Image.BICUBIC)
    except (OSError, ValueError) as exc:
        raise FileNotFoundError(f"cannot read background image {path}: {exc}") from exc
    return np.asarray(rgb, dtype=np.float32) / 255.0


def render_inpaint_paste(pipe, layouts: list[Layout], sampler: SamplerSpec, seeds: list[int],
                         spec: ModelSpec) -> np.ndarray:
    height, width = _size(layouts)
    canvas = np.zeros((len(layouts), height, width, 3), dtype=np.float32)
    # 1. Backgrounds: loaded, or generated by inpainting the whole frame
    generate = [b for b, layout in enumerate(layouts) if "background_image" not in layout.extra]
    for b, layout in enumerate(layouts):
        if b not in generate:
            canvas[b] = load_background(layout.extra["background_image"], height, width)
    if generate:
        canvas[generate] = inpaint(pipe, canvas[generate],
                                   np.ones((len(generate), height, width), dtype=bool),
                                   [background_prompt(layouts[b], sampler) for b in generate],
                                   [seeds[b] for b in generate], sampler)
    bad = ~np.isfinite(canvas).reshape(len(layouts), -1).all(axis=1)
    # 2. Instances in drawing order, each sample's k-th visible instance in one batch
    for k in range(max((len(layout.instances) for layout in layouts), default=0)):
        rows = [b for b, layout in enumerate(layouts) if k < len(layout.instances)
                and (layout.instance_map == k + 1).any()]
        if not rows:
            continue
        masks = np.stack([layouts[b].instances[k].mask(height, width) for b in rows])
        out = inpaint(pipe, canvas[rows], masks,
                      [instance_prompt(layouts[b].instances[k], sampler) for b in rows],
                      [stage_seed(seeds[b], k + 1) for b in rows], sampler)
        bad[rows] |= ~np.isfinite(out).reshape(len(rows), -1).all(axis=1)
        canvas[rows] = np.where(masks[..., None], out, canvas[rows])
    canvas[bad] = np.nan
    return canvas


RENDERERS = {"controlnet-seg": render_controlnet, "gligen": render_gligen,
             "inpaint-paste": render_inpaint_paste}
