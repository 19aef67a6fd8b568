"""Training of the embedded ``shapes-tiny`` generator (``synthmill train shapes``).

DDPM training (Algorithm 1 of Ho et al. 2020) with the epsilon objective on a cosine schedule
(Nichol & Dhariwal 2021), condition dropout for classifier-free guidance (Ho & Salimans 2022), and an
exponential moving average of the weights. The data are procedural scenes rendered once from a fixed
seed; the 8 symmetries of the square are applied to image and condition alike.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

import torch
import torch.nn.functional as F
from diffusers import DDPMScheduler, DPMSolverMultistepScheduler
from diffusers.optimization import get_cosine_schedule_with_warmup
from diffusers.training_utils import EMAModel

from augment.config.training import TrainShapesSpec
from augment.core.devices import resolve_device
from augment.core.io import atomic_write_text
from augment.core.training import Optimisation, Stats, Stopwatch, autocast, train_loop, write_report
from augment.image.pipelines.shapes_tiny import ShapesTinyPipeline, condition_from_maps, make_unet
from augment.image.training.augmentations import dihedral, symmetry_flags
from augment.image.training.scenes import SceneArrays, render_training_scenes, world_layout_spec


def noise_schedule() -> DDPMScheduler:
    """The training noise schedule shipped with the model (samplers are built from its config).

    The cosine schedule reaches alpha_bar ~ 2e-6 at t = 999, where an epsilon model's x0 estimate
    divides by sqrt(alpha_bar): a pixel-space model must clip x0 to the data range there. So the
    shipped config turns on dynamic thresholding (Saharia et al. 2022, Imagen) and x0 clipping,
    which every sampler built ``from_config`` inherits.
    """
    return DDPMScheduler(num_train_timesteps=1000, beta_schedule="squaredcos_cap_v2",
                         prediction_type="epsilon", clip_sample=True, clip_sample_range=1.0,
                         thresholding=True, sample_max_value=1.0)


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


def _fit(spec: TrainShapesSpec, scenes: _DeviceScenes, unet: torch.nn.Module,
         watch: Stopwatch) -> list:
    """Train ``unet`` (DDPM, epsilon objective) on batches of ``scenes``; returns the loss curve
    (with the learning rate and the seconds so far). AdamW, cosine schedule with warm-up, gradient
    norm clipped at 1, EMA of the weights (``unet`` holds the EMA weights at the end)."""
    device = scenes.images.device
    ema = EMAModel(unet.parameters(), decay=spec.ema_decay, use_ema_warmup=True, power=0.75)
    ema.to(device)
    alphas = noise_schedule().alphas_cumprod.to(device)
    optimizer = torch.optim.AdamW(unet.parameters(), lr=spec.learning_rate, weight_decay=0.0)
    lr_schedule = get_cosine_schedule_with_warmup(optimizer, spec.warmup_steps, spec.steps)
    gen = torch.Generator(device=device).manual_seed(spec.seed)
    mixed_precision = autocast(device, spec.mixed_precision)

    def loss(batch: tuple[torch.Tensor, torch.Tensor]) -> Stats:
        images, condition = batch
        noise = torch.randn(images.shape, generator=gen, device=device)
        t = torch.randint(0, len(alphas), (images.shape[0],), generator=gen, device=device)
        a = alphas[t].view(-1, 1, 1, 1)
        noisy = a.sqrt() * images + (1 - a).sqrt() * noise  # q(x_t | x_0), Ho et al. eq. 4
        with mixed_precision:
            pred = unet(torch.cat([noisy, condition], dim=1), t).sample
        per_image = F.mse_loss(pred.float(), noise, reduction="none").mean(dim=(1, 2, 3))
        return {"loss": (_snr_weight(a.view(-1), spec.snr_gamma) * per_image).mean()}

    curve = train_loop(lambda: scenes.batch(spec.batch_size, spec, gen), loss,
                       Optimisation(optimizer, lr_schedule, clip_grad_norm=1.0, ema=ema),
                       spec.steps, spec.log_every, "train shapes-tiny",
                       lambda: {"lr": lr_schedule.get_last_lr()[0], "seconds": watch.seconds()})
    ema.copy_to(unet.parameters())
    return curve


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
    curve = _fit(spec, scenes, unet.to(memory_format=torch.channels_last), watch)
    watch.end_training()

    unet = unet.to("cpu", torch.float16).to(memory_format=torch.contiguous_format)
    pipe = ShapesTinyPipeline(unet=unet, scheduler=DPMSolverMultistepScheduler.from_config(
        noise_schedule().config))
    pipe.save_pretrained(out_dir, safe_serialization=True)
    atomic_write_text(out_dir / "training_log.csv", _csv(curve))
    write_report(out_dir, spec, watch, device, {"final_loss": curve[-1]["loss"], "loss_curve": curve},
                 {"world": world.model_dump(mode="json")})
    return out_dir


def _csv(rows: list[dict]) -> str:
    """The loss curve as CSV text: a header, then one line per row."""
    text = io.StringIO(newline="")
    writer = csv.DictWriter(text, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
    return text.getvalue()


def _snr_weight(alpha_bar: torch.Tensor, gamma: float | None) -> torch.Tensor:
    """Min-SNR-gamma loss weights for the epsilon objective (Hang et al. 2023): min(SNR, g) / SNR."""
    if gamma is None:
        return torch.ones_like(alpha_bar)
    snr = alpha_bar / (1 - alpha_bar)
    return snr.clamp(max=gamma) / snr
