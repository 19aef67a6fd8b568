"""Training of the embedded ``shapes-tiny`` generator (``synthmill train shapes``).

DDPM training (Algorithm 1 of Ho et al. 2020) with the epsilon objective on a cosine schedule
(Nichol & Dhariwal 2021), condition dropout for classifier-free guidance (Ho & Salimans 2022), and an
exponential moving average of the weights. The data are procedural scenes rendered once from a fixed
seed; the 8 symmetries of the square are applied to image and condition alike.
"""

from __future__ import annotations

import csv
import json
import logging
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from diffusers import DDPMScheduler, DPMSolverMultistepScheduler
from diffusers.optimization import get_cosine_schedule_with_warmup
from diffusers.training_utils import EMAModel
from tqdm.auto import tqdm

from augment.config.training import TrainShapesSpec
from augment.image.pipelines.shapes_tiny import ShapesTinyPipeline, condition_from_maps, make_unet
from augment.image.training.scenes import SceneArrays, render_scenes_parallel, world_layout_spec
from augment.core.devices import resolve_device

log = logging.getLogger(__name__)


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
        both = _dihedral(torch.cat([images, condition], dim=1), gen)
        return both[:, :3].contiguous(), both[:, 3:].contiguous()


def _dihedral(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Apply one random symmetry of the square per sample (flips and transposes), (B, C, H, W)."""
    flags = torch.rand(3, x.shape[0], generator=gen, device=x.device) < 0.5
    x = torch.where(flags[0, :, None, None, None], x.flip(-1), x)
    x = torch.where(flags[1, :, None, None, None], x.flip(-2), x)
    return torch.where(flags[2, :, None, None, None], x.transpose(-1, -2), x)


def train_shapes_generator(spec: TrainShapesSpec, out_dir: str | Path,
                           workers: int | None = None) -> Path:
    """Train ``shapes-tiny`` from scratch and save it as a diffusers folder with fp16 safetensors.

    Writes ``out_dir/{model_index.json, unet/, scheduler/, training_log.csv, training.json}``.
    Same spec and seed -> same data and the same initial weights; the optimisation itself is
    reproducible on the same device type.
    """
    out_dir = Path(out_dir)
    start = time.time()
    world = world_layout_spec(spec.resolution)
    log.info("rendering %d training scenes", spec.num_scenes)
    # render before touching CUDA: the worker processes are forked
    arrays = render_scenes_parallel(world, spec.seed, spec.num_scenes, workers)
    log.info("rendered in %.1fs", time.time() - start)
    device = resolve_device(spec.device)
    torch.manual_seed(spec.seed)
    scenes = _DeviceScenes(arrays, device)

    unet = make_unet(spec.resolution, spec.block_out_channels, spec.layers_per_block).to(device)
    unet = unet.to(memory_format=torch.channels_last)
    ema = EMAModel(unet.parameters(), decay=spec.ema_decay, use_ema_warmup=True, power=0.75)
    ema.to(device)
    schedule = noise_schedule()
    alphas = schedule.alphas_cumprod.to(device)
    optimizer = torch.optim.AdamW(unet.parameters(), lr=spec.learning_rate, weight_decay=0.0)
    lr_schedule = get_cosine_schedule_with_warmup(optimizer, spec.warmup_steps, spec.steps)
    gen = torch.Generator(device=device).manual_seed(spec.seed)
    autocast = _autocast(device, spec.mixed_precision)

    out_dir.mkdir(parents=True, exist_ok=True)
    log_rows, running = [], []
    bar = tqdm(range(1, spec.steps + 1), desc="train shapes-tiny", mininterval=5)
    for step in bar:
        images, condition = scenes.batch(spec.batch_size, spec, gen)
        noise = torch.randn(images.shape, generator=gen, device=device)
        t = torch.randint(0, schedule.config.num_train_timesteps, (images.shape[0],),
                          generator=gen, device=device)
        a = alphas[t].view(-1, 1, 1, 1)
        noisy = a.sqrt() * images + (1 - a).sqrt() * noise  # q(x_t | x_0), Ho et al. eq. 4
        with autocast:
            pred = unet(torch.cat([noisy, condition], dim=1), t).sample
        loss = (_snr_weight(a.view(-1), spec.snr_gamma)
                * F.mse_loss(pred.float(), noise, reduction="none").mean(dim=(1, 2, 3))).mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(unet.parameters(), 1.0)
        optimizer.step()
        lr_schedule.step()
        ema.step(unet.parameters())
        running.append(loss.detach())
        if step % spec.log_every == 0 or step == spec.steps:
            mean = torch.stack(running).mean().item()
            running.clear()
            log_rows.append({"step": step, "loss": round(mean, 5),
                             "lr": lr_schedule.get_last_lr()[0], "seconds": round(time.time() - start, 1)})
            bar.set_postfix(loss=f"{mean:.4f}")
            log.info("step %d loss %.4f", step, mean)

    ema.copy_to(unet.parameters())
    pipe = ShapesTinyPipeline(unet=unet.to("cpu", torch.float16).to(memory_format=torch.contiguous_format),
                              scheduler=DPMSolverMultistepScheduler.from_config(schedule.config))
    pipe.save_pretrained(out_dir, safe_serialization=True)
    with open(out_dir / "training_log.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=["step", "loss", "lr", "seconds"])
        writer.writeheader()
        writer.writerows(log_rows)
    (out_dir / "training.json").write_text(json.dumps({
        "recipe": spec.model_dump(mode="json"), "device": str(device),
        "torch": torch.__version__, "seconds": round(time.time() - start, 1),
        "final_loss": log_rows[-1]["loss"] if log_rows else None,
        "world": world.model_dump(mode="json"),
    }, indent=2))
    return out_dir


def _snr_weight(alpha_bar: torch.Tensor, gamma: float | None) -> torch.Tensor:
    """Min-SNR-gamma loss weights for the epsilon objective (Hang et al. 2023): min(SNR, g) / SNR."""
    if gamma is None:
        return torch.ones_like(alpha_bar)
    snr = alpha_bar / (1 - alpha_bar)
    return snr.clamp(max=gamma) / snr


def _autocast(device: torch.device, precision: str):
    if precision == "no" or device.type == "cpu":
        return torch.autocast(device.type, enabled=False)
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return torch.autocast(device.type, dtype=dtype)
