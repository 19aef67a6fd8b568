"""Training and held-out evaluation of the shapes checker (``augment.image.checker``).

The checker learns from real procedural scenes only (uniform colours, every background, with
occlusion), so it shares no weights and no data with the generator it checks. Augmentations stand
in for the ways a generated image differs from a rendered one: Gaussian blur, additive noise,
brightness/contrast shifts; the 8 symmetries of the square act on image and labels together.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from augment.config.image import ShapesLayoutSpec
from augment.core.io import atomic_write_json
from augment.image.layouts import sample_layout
from augment.image.checker import (ShapesChecker, confusion_matrix, load_checker,
                                    miou_from_confusion, predict, save_checker, score_instances)
from augment.image.world import CLASSES
from augment.image.training.scenes import SceneArrays, render_scenes_parallel, world_layout_spec

log = logging.getLogger(__name__)

_MAX_BLUR_SIGMA = 1.0
_MAX_NOISE_STD = 0.04  # on the [0, 1] scale, about 10 grey levels
_BRIGHTNESS = 0.05  # additive shift, uniform in +-this
_CONTRAST = 0.15  # multiplicative, uniform in 1 +- this


def scene_label_maps(scenes: SceneArrays) -> tuple[np.ndarray, np.ndarray]:
    """Per-pixel targets of the checker: class ids and colour ids (0 = background), (N, H, W) uint8."""
    flat = scenes.instance.reshape(len(scenes), -1).astype(np.int64)
    colour_lut = np.concatenate([np.zeros((len(scenes), 1), np.uint8), scenes.colours], axis=1)
    colour = np.take_along_axis(colour_lut, flat, axis=1).reshape(scenes.instance.shape)
    return scenes.semantic(), colour


def gaussian_blur(images: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """Blur each image with its own sigma (separable 5-tap kernel, reflect padding).

    images (B, C, H, W) float; sigma (B,) float >= 0 (0 leaves the image unchanged).
    """
    b, c, h, w = images.shape
    taps = torch.arange(-2, 3, dtype=images.dtype, device=images.device)
    kernel = torch.exp(-taps**2 / (2 * sigma.clamp_min(1e-3)[:, None] ** 2))  # (B, 5)
    kernel = (kernel / kernel.sum(1, keepdim=True)).repeat_interleave(c, dim=0)  # (B*C, 5)
    x = images.reshape(1, b * c, h, w)
    x = F.conv2d(F.pad(x, (2, 2, 0, 0), mode="reflect"), kernel[:, None, None, :], groups=b * c)
    x = F.conv2d(F.pad(x, (0, 0, 2, 2), mode="reflect"), kernel[:, None, :, None], groups=b * c)
    return x.reshape(b, c, h, w)


def _dihedral(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """One random symmetry of the square per sample (flips and a transpose), (B, C, H, W)."""
    flags = torch.rand(3, x.shape[0], generator=gen, device=x.device) < 0.5
    x = torch.where(flags[0, :, None, None, None], x.flip(-1), x)
    x = torch.where(flags[1, :, None, None, None], x.flip(-2), x)
    return torch.where(flags[2, :, None, None, None], x.transpose(-1, -2), x)


def _augment(images: torch.Tensor, semantic: torch.Tensor, colour: torch.Tensor,
             gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """images (B, 3, H, W) uint8, labels (B, H, W) uint8 -> float images in [0, 1], long labels."""
    b = images.shape[0]
    stacked = torch.cat([images.float() / 255.0, semantic[:, None].float(), colour[:, None].float()], 1)
    stacked = _dihedral(stacked, gen)  # labels must move with the pixels
    x, semantic, colour = stacked[:, :3], stacked[:, 3].long(), stacked[:, 4].long()

    def uniform(low: float, high: float) -> torch.Tensor:
        return low + (high - low) * torch.rand(b, 1, 1, 1, generator=gen, device=x.device)

    x = gaussian_blur(x, uniform(0.0, _MAX_BLUR_SIGMA).flatten())
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    x = (x - mean) * uniform(1 - _CONTRAST, 1 + _CONTRAST) + mean + uniform(-_BRIGHTNESS, _BRIGHTNESS)
    x = x + uniform(0.0, _MAX_NOISE_STD) * torch.randn(x.shape, generator=gen, device=x.device)
    return x.clamp(0.0, 1.0), semantic, colour


def evaluate_checker(model: ShapesChecker, world: ShapesLayoutSpec, seed: int, num_scenes: int,
                     blur_sigma: float = 0.0, noise_std: float = 0.0,
                     workers: int | None = None) -> dict:
    """Held-out metrics on real scenes ``0 .. num_scenes-1`` of ``world`` seeded with ``seed``.

    ``blur_sigma`` / ``noise_std`` degrade the images (as a generator might) before prediction.
    Returns floats: ``miou`` (classes and background), ``miou_foreground`` (classes only, from the
    same confusion matrix), ``colour_pixel_accuracy`` (over foreground pixels), ``colour_instance_
    accuracy`` and ``verify_iou_mean`` / ``verify_keep_0.5`` (share of instances scoring >= 0.5)
    from ``score_instances``; plus ``per_class_iou`` and the counts.
    """
    scenes = render_scenes_parallel(world, seed, num_scenes, workers)
    semantic_true, colour_true = scene_label_maps(scenes)
    images = torch.from_numpy(scenes.images).float() / 255.0
    if blur_sigma > 0:
        images = gaussian_blur(images, torch.full((len(images),), blur_sigma))
    if noise_std > 0:
        noise = torch.randn(images.shape, generator=torch.Generator().manual_seed(seed))
        images = (images + noise_std * noise).clamp(0.0, 1.0)
    semantic, colour = predict(model, images)
    conf = confusion_matrix(semantic, semantic_true, len(CLASSES) + 1)
    miou, per_class = miou_from_confusion(conf)
    foreground = semantic_true > 0
    instances = [score for i in range(num_scenes) for score in
                 score_instances(semantic[i], colour[i], sample_layout(world, seed, i))]
    verify = np.array([s["verify_iou"] for s in instances])
    return {
        "miou": miou,
        "miou_foreground": float(np.nanmean(per_class[1:])),
        "per_class_iou": {name: None if np.isnan(iou) else round(float(iou), 5)  # absent: None
                          for name, iou in zip(("background",) + CLASSES, per_class)},
        "colour_pixel_accuracy": float((colour.numpy()[foreground] == colour_true[foreground]).mean()),
        "colour_instance_accuracy": float(np.mean([s["colour_ok"] for s in instances
                                                   if s["colour_ok"] is not None])),
        "verify_iou_mean": float(verify.mean()),
        "verify_keep_0.5": float((verify >= 0.5).mean()),
        "num_scenes": num_scenes,
        "num_instances": len(instances),
        "seed": seed,
        "blur_sigma": blur_sigma,
        "noise_std": noise_std,
    }


def train_checker(out_dir: str | Path, seed: int = 0, num_scenes: int = 20_000, steps: int = 2_000,
                  batch_size: int = 64, learning_rate: float = 3e-3,
                  widths: tuple[int, ...] = (16, 32, 48, 64), eval_scenes: int = 1_000,
                  workers: int | None = None, device: str = "cpu") -> dict:
    """Train a ``ShapesChecker`` on real scenes and save it with its held-out metrics.

    Scenes ``0 .. num_scenes-1`` of the uniform-colour world (``world_layout_spec(64, skewed=False)``)
    seeded with ``seed`` are rendered once; held-out metrics come from ``eval_scenes`` scenes of
    seed ``seed + 1``, clean and degraded (blur sigma 1, noise std 0.03). Loss: cross-entropy of the
    class head plus cross-entropy of the colour head; AdamW with a one-cycle schedule. Writes
    ``out_dir/{model.safetensors, config.json, training.json}`` and returns training.json's dict.
    Same arguments -> same data, initial weights and batches.
    """
    start = time.time()
    world = world_layout_spec(64, skewed=False)
    log.info("rendering %d training scenes", num_scenes)
    scenes = render_scenes_parallel(world, seed, num_scenes, workers)
    semantic, colour = (torch.from_numpy(a).to(device) for a in scene_label_maps(scenes))
    images = torch.from_numpy(scenes.images).to(device)  # (N, 3, H, W) uint8
    log.info("rendered in %.1fs", time.time() - start)

    torch.manual_seed(seed)
    model = ShapesChecker(widths).to(device).to(memory_format=torch.channels_last)
    optimizer = torch.optim.AdamW(model.parameters(), lr=learning_rate, weight_decay=1e-4)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, learning_rate, total_steps=steps,
                                                   pct_start=0.1)
    gen = torch.Generator(device=device).manual_seed(seed)
    curve, running = [], []
    bar = tqdm(range(1, steps + 1), desc="train shapes checker", mininterval=5)
    for step in bar:
        idx = torch.randint(len(images), (batch_size,), generator=gen, device=device)
        x, y_class, y_colour = _augment(images[idx], semantic[idx], colour[idx], gen)
        class_logits, colour_logits = model(x.contiguous(memory_format=torch.channels_last))
        loss = F.cross_entropy(class_logits, y_class) + F.cross_entropy(colour_logits, y_colour)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
        running.append(loss.item())
        if step % 100 == 0 or step == steps:
            curve.append({"step": step, "loss": round(float(np.mean(running)), 5)})
            running.clear()
            bar.set_postfix(loss=f"{curve[-1]['loss']:.4f}")
            log.info("step %d loss %.4f", step, curve[-1]["loss"])
    train_seconds = time.time() - start

    model = model.to(memory_format=torch.contiguous_format).eval()
    out_dir = save_checker(model, out_dir)
    # evaluate the weights as shipped (fp16-rounded), not the fp32 ones in memory
    shipped = load_checker(out_dir, device)
    report = {
        "recipe": {"seed": seed, "num_scenes": num_scenes, "steps": steps, "batch_size": batch_size,
                   "learning_rate": learning_rate, "widths": list(widths), "eval_scenes": eval_scenes,
                   "world": world.model_dump(mode="json")},
        "parameters": sum(p.numel() for p in model.parameters()),
        "held_out": evaluate_checker(shipped, world, seed + 1, eval_scenes, workers=workers),
        "held_out_degraded": evaluate_checker(shipped, world, seed + 1, eval_scenes, blur_sigma=1.0,
                                              noise_std=0.03, workers=workers),
        "loss_curve": curve,
        "device": str(device),
        "torch": torch.__version__,
        "train_seconds": round(train_seconds, 1),
        "seconds": round(time.time() - start, 1),
    }
    atomic_write_json(out_dir / "training.json", report)
    log.info("held-out: %s", {k: report["held_out"][k] for k in ("miou", "colour_instance_accuracy")})
    return report
