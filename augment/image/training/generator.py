"""Training of the embedded ``shapes-tiny`` generator (``synthmill train shapes``).

DDPM training (Algorithm 1 of Ho et al. 2020) with the epsilon objective on a cosine schedule
(Nichol & Dhariwal 2021), condition dropout for classifier-free guidance (Ho & Salimans 2022), and an
exponential moving average of the weights. The data are procedural scenes rendered once from a fixed
seed; the 8 symmetries of the square are applied to image and condition alike.
"""

from __future__ import annotations

from pathlib import Path

import torch
from diffusers import DPMSolverMultistepScheduler

from augment.config.training import TrainShapesSpec
from augment.core.devices import resolve_device
from augment.core.io import atomic_write_text
from augment.core.diffusion_training import curve_csv, fit_ddpm, noise_schedule
from augment.core.training import Stopwatch, write_report
from augment.image.pipelines.shapes_tiny import ShapesTinyPipeline, condition_from_maps, make_unet
from augment.image.training.augmentations import dihedral, symmetry_flags
from augment.image.training.scenes import SceneArrays, render_training_scenes, world_layout_spec


class _DeviceScenes:
    """Scene arrays resident on the training device, with batch assembly and augmentation."""

    def __init__(self, scenes: SceneArrays, device: torch.device):
        self.images = torch.from_numpy(scenes.images).to(device)  # (N, 3, H, W) uint8
        self.instance = torch.from_numpy(scenes.instance).to(device).long()  # (N, H, W)
        self.classes = torch.from_numpy(scenes.classes).to(device).long()  # (N, M)
        self.colours = torch.from_numpy(scenes.colours).to(device).long()  # (N, M)
        self.background = torch.from_numpy(scenes.background).to(device).long()  # (N,)

    def batch(self, size: int, spec: TrainShapesSpec, gen: torch.Generator):
        """Returns (images in [-1, 1] (B, 3, H, W), condition (B, C, H, W))."""
        device = self.images.device
        idx = torch.randint(len(self.images), (size,), generator=gen, device=device)
        images = self.images[idx].float() / 127.5 - 1.0
        instance = self.instance[idx]
        zeros = torch.zeros(size, 1, dtype=torch.long, device=device)
        class_lut = torch.cat([zeros, self.classes[idx]], dim=1)  # (B, M + 1)
        colours = self.colours[idx]
        keep_colour = torch.rand(colours.shape, generator=gen, device=device) >= spec.colour_dropout
        colour_lut = torch.cat([zeros, colours * keep_colour], dim=1)
        semantic = torch.gather(class_lut, 1, instance.flatten(1)).view_as(instance)
        colour = torch.gather(colour_lut, 1, instance.flatten(1)).view_as(instance)
        keep_bg = torch.rand(size, generator=gen, device=device) >= spec.background_dropout
        condition = condition_from_maps(semantic, instance, colour, self.background[idx] * keep_bg)
        keep_all = torch.rand(size, 1, 1, 1, generator=gen, device=device) >= spec.condition_dropout
        condition = condition * keep_all
        both = dihedral(torch.cat([images, condition], dim=1), symmetry_flags(size, gen, device))
        return both[:, :3].contiguous(), both[:, 3:].contiguous()


def train_shapes_generator(spec: TrainShapesSpec, out_dir: str | Path,
                           workers: int | None = None) -> Path:
    """Train ``shapes-tiny`` from scratch and save it as a diffusers folder with fp16 safetensors.

    Scenes ``0 .. num_scenes-1`` of the skewed world (``world_layout_spec(resolution)``) seeded
    with ``spec.seed`` are rendered once (``workers`` processes; None = one per CPU). Writes
    ``out_dir/{model_index.json, unet/, scheduler/, training_log.csv, training.json}``. Same spec
    -> same data and the same initial weights; the optimisation itself is reproducible on the same
    device type.
    """
    out_dir = Path(out_dir)
    watch = Stopwatch()
    world = world_layout_spec(spec.resolution)
    arrays = render_training_scenes(world, spec.seed, spec.num_scenes, workers)
    device = resolve_device(spec.device)
    torch.manual_seed(spec.seed)
    scenes = _DeviceScenes(arrays, device)
    unet = make_unet(spec.resolution, spec.block_out_channels, spec.layers_per_block).to(device)
    gen = torch.Generator(device=device).manual_seed(spec.seed)
    curve = fit_ddpm(spec, unet.to(memory_format=torch.channels_last), noise_schedule(),
                     lambda: scenes.batch(spec.batch_size, spec, gen), gen, watch,
                     "train shapes-tiny")
    watch.end_training()

    unet = unet.to("cpu", torch.float16).to(memory_format=torch.contiguous_format)
    pipe = ShapesTinyPipeline(unet=unet, scheduler=DPMSolverMultistepScheduler.from_config(
        noise_schedule().config))
    pipe.save_pretrained(out_dir, safe_serialization=True)
    atomic_write_text(out_dir / "training_log.csv", curve_csv(curve))
    write_report(out_dir, spec, watch, device, {"final_loss": curve[-1]["loss"], "loss_curve": curve},
                 {"world": world.model_dump(mode="json")})
    return out_dir

