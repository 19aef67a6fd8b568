"""``shapes-tiny``: the embedded layout-to-image diffusion model of the shapes world.

A ``UNet2DModel`` denoises the image with the condition concatenated to its input channels
(the SR3 / Palette recipe, Saharia et al. 2021): one-hot semantic map, instance boundary map,
one-hot colour map and one-hot background type. An all-zero colour (or background) entry means
"unspecified": the model chooses, reproducing its training prior. The whole condition is dropped to
zeros during training, so classifier-free guidance (Ho & Salimans 2022) works at sampling time.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from diffusers import DiffusionPipeline, ImagePipelineOutput, UNet2DModel
from diffusers.schedulers.scheduling_utils import SchedulerMixin

from augment.core.guided_diffusion import check_condition, check_sampling_args, guided_denoise
from augment.image.world import BACKGROUNDS, CLASSES, COLOURS

NUM_SEMANTIC = len(CLASSES) + 1  # + background
COND_CHANNELS = NUM_SEMANTIC + 1 + len(COLOURS) + len(BACKGROUNDS)


def boundary_map(instance_map: torch.Tensor) -> torch.Tensor:
    """Inner boundary of every instance: (B, H, W) integer ids -> (B, H, W) bool.

    A pixel of an instance is on its boundary when a 4-neighbour has another id (image borders
    count as the same id, so shapes cut by the border keep no artificial edge).
    """
    padded = F.pad(instance_map[:, None].float(), (1, 1, 1, 1), mode="replicate")[:, 0]
    centre = padded[:, 1:-1, 1:-1]
    edge = ((padded[:, :-2, 1:-1] != centre) | (padded[:, 2:, 1:-1] != centre)
            | (padded[:, 1:-1, :-2] != centre) | (padded[:, 1:-1, 2:] != centre))
    return edge & (instance_map > 0)


def condition_from_maps(semantic: torch.Tensor, instance: torch.Tensor, colour: torch.Tensor,
                        background: torch.Tensor) -> torch.Tensor:
    """Build the condition tensor from compact maps (runs on any device).

    Args:
        semantic: (B, H, W) long, class index per pixel, 0 = background.
        instance: (B, H, W) long, instance id per pixel, 0 = background.
        colour: (B, H, W) long, 0 = none/unspecified, ``1 + COLOURS.index(c)`` otherwise.
        background: (B,) long, 0 = unspecified, ``1 + BACKGROUNDS.index(b)`` otherwise.
    Returns:
        (B, COND_CHANNELS, H, W) float32 in {0, 1}.
    """
    b, h, w = semantic.shape
    sem = F.one_hot(semantic, NUM_SEMANTIC).permute(0, 3, 1, 2).float()
    edge = boundary_map(instance)[:, None].float()
    col = F.one_hot(colour, len(COLOURS) + 1).permute(0, 3, 1, 2)[:, 1:].float()
    bg = F.one_hot(background, len(BACKGROUNDS) + 1)[:, 1:].float()
    bg = bg[:, :, None, None].expand(b, len(BACKGROUNDS), h, w)
    return torch.cat([sem, edge, col, bg], dim=1)


def layout_maps(layouts) -> dict[str, torch.Tensor]:
    """Compact maps of ``augment.image.layouts.Layout`` objects (see ``condition_from_maps``)."""
    semantic, instance, colour, background = [], [], [], []
    for layout in layouts:
        inst = layout.instance_map.astype(np.int64)
        lut = np.array([0] + [1 + COLOURS.index(i.colour) if i.colour else 0
                              for i in layout.instances], dtype=np.int64)
        semantic.append(layout.semantic_map.astype(np.int64))
        instance.append(inst)
        colour.append(lut[inst])
        background.append(1 + BACKGROUNDS.index(layout.background) if layout.background else 0)
    return {"semantic": torch.from_numpy(np.stack(semantic)),
            "instance": torch.from_numpy(np.stack(instance)),
            "colour": torch.from_numpy(np.stack(colour)),
            "background": torch.tensor(background, dtype=torch.long)}


def encode_layouts(layouts) -> torch.Tensor:
    """Layouts -> condition tensor (B, COND_CHANNELS, H, W) float32."""
    return condition_from_maps(**layout_maps(layouts))


def make_unet(sample_size: int = 64, block_out_channels: tuple[int, ...] = (24, 48, 96, 128),
              layers_per_block: int = 1) -> UNet2DModel:
    """The shipped architecture: attention only at the two coarsest resolutions."""
    n = len(block_out_channels)
    down = ["DownBlock2D"] * (n - 2) + ["AttnDownBlock2D"] * 2
    up = ["AttnUpBlock2D"] * 2 + ["UpBlock2D"] * (n - 2)
    return UNet2DModel(
        sample_size=sample_size, in_channels=3 + COND_CHANNELS, out_channels=3,
        block_out_channels=tuple(block_out_channels), layers_per_block=layers_per_block,
        down_block_types=tuple(down), up_block_types=tuple(up), norm_num_groups=8,
        attention_head_dim=min(32, block_out_channels[-2]), add_attention=True,
    )


class ShapesTinyPipeline(DiffusionPipeline):
    """Layout-conditioned sampling with classifier-free guidance.

    ``pipe(condition, ...)`` takes the tensor of ``encode_layouts``; ``pipe.from_layouts(layouts,
    ...)`` encodes for you. Images come back in [0, 1] as (B, H, W, 3) numpy ("np"), (B, 3, H, W)
    torch ("pt") or PIL.
    """

    model_cpu_offload_seq = "unet"

    def __init__(self, unet: UNet2DModel, scheduler: SchedulerMixin):
        super().__init__()
        self.register_modules(unet=unet, scheduler=scheduler)

    def check_inputs(self, condition, generator, num_inference_steps, guidance_scale,
                     noise_temperature, output_type):
        size = self.unet.config.sample_size
        check_condition(condition, (COND_CHANNELS, size, size), "encode_layouts")
        check_sampling_args(condition.shape[0], generator, num_inference_steps, guidance_scale,
                            noise_temperature)
        if output_type not in ("np", "pt", "pil"):
            raise ValueError(f"`output_type` must be 'np', 'pt' or 'pil', got {output_type!r}")

    @torch.no_grad()
    def __call__(self, condition: torch.Tensor, num_inference_steps: int = 20,
                 guidance_scale: float = 2.0, eta: float = 0.0, noise_temperature: float = 1.0,
                 generator: torch.Generator | list[torch.Generator] | None = None,
                 output_type: str = "np", return_dict: bool = True):
        # 1. Check inputs
        self.check_inputs(condition, generator, num_inference_steps, guidance_scale,
                          noise_temperature, output_type)
        device, dtype = self._execution_device, self.unet.dtype
        size = self.unet.config.sample_size
        condition = condition.to(device=device, dtype=dtype)

        # 2. Denoise from one generator per sample (the unconditional input: no condition at all)
        latents = guided_denoise(self.unet, self.scheduler, condition, torch.zeros_like(condition),
                                 (condition.shape[0], 3, size, size), num_inference_steps,
                                 guidance_scale, eta, noise_temperature, generator,
                                 self.progress_bar)

        # 3. Post-process: (B, 3, H, W) in [-1, 1] -> [0, 1]
        images = (latents.float() / 2 + 0.5).clamp(0, 1)
        if output_type == "np":
            images = images.permute(0, 2, 3, 1).cpu().numpy()
        elif output_type == "pil":
            images = self.numpy_to_pil(images.permute(0, 2, 3, 1).cpu().numpy())
        self.maybe_free_model_hooks()
        if not return_dict:
            return (images,)
        return ImagePipelineOutput(images=images)

    def from_layouts(self, layouts, **kwargs):
        """Sample images for ``augment.image.layouts.Layout`` objects (see ``__call__`` for kwargs)."""
        return self(encode_layouts(layouts), **kwargs)
