"""Training and held-out evaluation of the shapes-features extractor
(``evaluation.image.shapes_features``).

The extractor learns from real procedural scenes only (uniform colours, every background, with
occlusion), so it shares no data with the generators it is used to judge. Its front end, a copy of
the shapes checker, stays frozen; everything after it is trained here. Its image class is the
(shape, colour) of the largest visible instance; auxiliary targets are the background texture, the
number of visible instances and, per 8x8-pixel cell, the share of pixels of each (shape, colour)
(a soft target: it teaches the trunk where each object is and how much of the image it covers,
which is what "largest" is decided by). Flips/transposes, blur, noise and brightness/contrast
shifts stand in for the ways a generated image differs from a rendered one; none changes a label.
"""

from __future__ import annotations

import hashlib
import logging
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from augment.config.image import ShapesLayoutSpec
from augment.core.io import atomic_write_json
from augment.image.checker import EMBEDDED_CHECKER, WEIGHTS_NAME as CHECKER_WEIGHTS, load_checker
from augment.image.world import COLOURS
from augment.image.training.checker import gaussian_blur
from augment.image.training.scenes import SceneArrays, render_scenes_parallel, world_layout_spec
from evaluation.image.shapes_features import (CLASS_NAMES, ShapesFeatureNet, load_shapes_features,
                                                   save_shapes_features)

log = logging.getLogger(__name__)

_MAX_BLUR_SIGMA = 1.0
_MAX_NOISE_STD = 0.04  # on the [0, 1] scale, about 10 grey levels
_BRIGHTNESS = 0.05  # additive shift, uniform in +-this
_CONTRAST = 0.15  # multiplicative, uniform in 1 +- this
_CELL = 8  # pixels per side of a cell of the auxiliary coverage map (64 / 8 = the trunk's 8x8 grid)
_CLEAR_MARGIN = 0.9  # "clear" scenes: the runner-up instance covers < 90% of the largest one's area


def scene_targets(scenes: SceneArrays) -> dict[str, np.ndarray]:
    """Labels of every scene, from the scene parameters (never from pixels).

    ``largest`` (N,) int64 index into ``CLASS_NAMES`` of the instance with the most visible pixels
    (ties: the one drawn first), -1 for a scene with no visible instance; ``background`` (N,) int64
    background index; ``count`` (N,) int64 number of visible instances minus one (-1 for none);
    ``cells`` (N, len(CLASS_NAMES) + 1, H / 8, W / 8) float32, the share of each 8x8-pixel cell
    covered by background (channel 0) and by each class (channel k = ``CLASS_NAMES[k - 1]``);
    ``runner_up`` (N,) float64 visible area of the second-largest instance over that of the
    largest (0 if alone).
    """
    n, m = scenes.classes.shape
    areas = np.stack([(scenes.instance == k + 1).reshape(n, -1).sum(1) for k in range(m)], axis=1)
    slot_class = np.where(scenes.classes > 0, (scenes.classes.astype(np.int64) - 1) * len(COLOURS)
                          + scenes.colours.astype(np.int64) - 1, -1)  # (N, M)
    largest = slot_class[np.arange(n), areas.argmax(1)]
    lut = np.concatenate([np.zeros((n, 1), np.int64), slot_class + 1], axis=1).clip(0)
    ranked = -np.sort(-areas, axis=1)
    # in chunks of 1000 scenes: an int64 label map of 20k scenes would take 650 MB
    cells = [cell_coverage(_class_map(lut[s:s + 1000], scenes.instance[s:s + 1000]), len(CLASS_NAMES) + 1)
             for s in range(0, n, 1000)]
    return {"largest": np.where(areas.max(1) > 0, largest, -1),
            "background": scenes.background.astype(np.int64) - 1,
            "count": (areas > 0).sum(1) - 1,
            "cells": np.concatenate(cells),
            "runner_up": ranked[:, 1] / np.maximum(ranked[:, 0], 1) if m > 1 else np.zeros(n)}


def _class_map(lut: np.ndarray, instance: np.ndarray) -> np.ndarray:
    """Per-pixel label (N, H, W) int64 from instance maps (N, H, W) and per-slot labels (N, M + 1)."""
    return np.take_along_axis(lut, instance.reshape(len(instance), -1).astype(np.int64),
                              axis=1).reshape(instance.shape)


def cell_coverage(labels: np.ndarray, num_labels: int, cell: int = _CELL) -> np.ndarray:
    """Share of each ``cell`` x ``cell`` block covered by each label: integer label maps (N, H, W)
    with values in ``0 .. num_labels-1`` -> float32 (N, num_labels, H / cell, W / cell)."""
    n, h, w = labels.shape
    grid = (h // cell, w // cell)
    cell_of_pixel = ((np.arange(h)[:, None] // cell) * grid[1] + np.arange(w) // cell).ravel()
    per_scene = num_labels * grid[0] * grid[1]
    index = (labels.reshape(n, h * w).astype(np.int64) * grid[0] * grid[1] + cell_of_pixel
             + per_scene * np.arange(n)[:, None])
    counts = np.bincount(index.ravel(), minlength=per_scene * n)
    return (counts / cell**2).astype(np.float32).reshape(n, num_labels, *grid)


def _dihedral(flags: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Apply per-sample flips and a transpose (``flags`` (3, B) bool) to x (B, C, H, W)."""
    x = torch.where(flags[0, :, None, None, None], x.flip(-1), x)
    x = torch.where(flags[1, :, None, None, None], x.flip(-2), x)
    return torch.where(flags[2, :, None, None, None], x.transpose(-1, -2), x)


def _augment(images: torch.Tensor, cells: torch.Tensor,
             gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """images (B, 3, H, W) uint8, coverage (B, K, H / 8, W / 8) -> float images in [0, 1] and the
    coverage moved with them (one random symmetry of the square per sample; 8 divides the side,
    so a flip of the image is exactly a flip of its cell grid)."""
    b = images.shape[0]
    flags = torch.rand(3, b, generator=gen, device=images.device) < 0.5
    x, cells = _dihedral(flags, images.float() / 255.0), _dihedral(flags, cells)

    def uniform(low: float, high: float) -> torch.Tensor:
        return low + (high - low) * torch.rand(b, 1, 1, 1, generator=gen, device=x.device)

    x = gaussian_blur(x, uniform(0.0, _MAX_BLUR_SIGMA).flatten())
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    x = (x - mean) * uniform(1 - _CONTRAST, 1 + _CONTRAST) + mean + uniform(-_BRIGHTNESS, _BRIGHTNESS)
    x = x + uniform(0.0, _MAX_NOISE_STD) * torch.randn(x.shape, generator=gen, device=x.device)
    return x.clamp(0.0, 1.0), cells


def _loss(outputs: dict[str, torch.Tensor], targets: dict[str, torch.Tensor],
          cells: torch.Tensor) -> torch.Tensor:
    """Sum of the head losses: cross-entropy for the three image heads (label -1 is ignored) and
    soft cross-entropy of the coverage map."""
    loss = sum(F.cross_entropy(outputs[head], targets[key], ignore_index=-1) for head, key in
               (("logits_unbiased", "largest"), ("background_logits", "background"),
                ("count_logits", "count")))
    return loss - (cells * F.log_softmax(outputs["cell_logits"], dim=1)).sum(1).mean()


@torch.no_grad()
def evaluate_shapes_features(model: ShapesFeatureNet, world: ShapesLayoutSpec, seed: int, num_scenes: int,
                             blur_sigma: float = 0.0, noise_std: float = 0.0,
                             workers: int | None = None) -> dict:
    """Held-out accuracies on real scenes ``0 .. num_scenes-1`` of ``world`` seeded with ``seed``.

    ``blur_sigma`` / ``noise_std`` degrade the images (as a generator might) before prediction.
    Returns floats: ``accuracy`` (30-way largest instance), its ``shape_accuracy`` and
    ``colour_accuracy``, ``accuracy_clear`` over scenes whose runner-up instance covers under 90%
    of the largest one's area (``share_clear`` of all), ``background_accuracy``, ``count_accuracy``;
    plus the counts and settings.
    """
    scenes = render_scenes_parallel(world, seed, num_scenes, workers)
    targets = scene_targets(scenes)
    images = torch.from_numpy(scenes.images).float() / 255.0
    if blur_sigma > 0:
        images = gaussian_blur(images, torch.full((len(images),), blur_sigma))
    if noise_std > 0:
        noise = torch.randn(images.shape, generator=torch.Generator().manual_seed(seed))
        images = (images + noise_std * noise).clamp(0.0, 1.0)
    device = next(model.parameters()).device
    outputs = [model(batch.to(device)) for batch in images.split(256)]
    pred = {head: torch.cat([o[head] for o in outputs]).argmax(1).cpu().numpy()
            for head in ("logits_unbiased", "background_logits", "count_logits")}
    largest, known = targets["largest"], targets["largest"] >= 0
    clear = known & (targets["runner_up"] < _CLEAR_MARGIN)
    hit = pred["logits_unbiased"] == largest
    n_colours = len(COLOURS)
    return {
        "accuracy": float(hit[known].mean()),
        "shape_accuracy": float((pred["logits_unbiased"] // n_colours == largest // n_colours)[known].mean()),
        "colour_accuracy": float((pred["logits_unbiased"] % n_colours == largest % n_colours)[known].mean()),
        "accuracy_clear": float(hit[clear].mean()),
        "share_clear": float(clear.sum() / known.sum()),
        "background_accuracy": float((pred["background_logits"] == targets["background"]).mean()),
        "count_accuracy": float((pred["count_logits"] == targets["count"])[known].mean()),
        "num_scenes": num_scenes,
        "seed": seed,
        "blur_sigma": blur_sigma,
        "noise_std": noise_std,
    }


def train_shapes_features(out_dir: str | Path, seed: int = 0, num_scenes: int = 10_000,
                          steps: int = 400, batch_size: int = 64, learning_rate: float = 1e-3,
                          widths: tuple[int, ...] = (24, 48, 96), feature_dim: int = 128,
                          background_dim: int = 16, eval_scenes: int = 1_000,
                          checker: str | Path | None = None,
                          workers: int | None = None, device: str = "cpu") -> dict:
    """Train a ``ShapesFeatureNet`` on real scenes and save it with its held-out metrics.

    ``checker`` is the shapes-checker folder copied in as the frozen front end (None = the one in
    ``augment/assets``). Scenes ``0 .. num_scenes-1`` of the uniform-colour world
    (``world_layout_spec(64, skewed=False)``) seeded with ``seed`` are rendered once; held-out
    metrics come from ``eval_scenes`` scenes of seed ``seed + 1``, clean and degraded (blur sigma 1,
    noise std 0.03). AdamW with a one-cycle schedule.

    ``background_dim`` features come from a separate background branch
    (``BackgroundBranch``): read from the shared hidden layer alone, the background head stays at
    chance (held-out ~0.25 of 4), because the class, count and coverage losses win that layer; 0
    builds the model without it. Writes ``out_dir/{model.safetensors, config.json,
    training.json}`` and returns training.json's dict. Same arguments and checker ->
    same data, initial weights and batches.
    """
    start = time.time()
    world = world_layout_spec(64, skewed=False)
    log.info("rendering %d training scenes", num_scenes)
    scenes = render_scenes_parallel(world, seed, num_scenes, workers)
    targets = {k: torch.from_numpy(v).to(device) for k, v in scene_targets(scenes).items()}
    images = torch.from_numpy(scenes.images).to(device)  # (N, 3, H, W) uint8
    log.info("rendered in %.1fs", time.time() - start)

    torch.manual_seed(seed)
    front_end = load_checker(checker)
    model = ShapesFeatureNet(widths, feature_dim, max_objects=world.objects_per_image[1],
                             checker=front_end.config, background_dim=background_dim)
    model.checker.load_state_dict(front_end.state_dict())
    model = model.to(device)
    trained = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trained, lr=learning_rate, weight_decay=1e-4)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, learning_rate, total_steps=steps,
                                                   pct_start=0.1)
    gen = torch.Generator(device=device).manual_seed(seed)
    curve, running, hits = [], [], []
    bar = tqdm(range(1, steps + 1), desc="train shapes features", mininterval=5)
    for step in bar:
        idx = torch.randint(len(images), (batch_size,), generator=gen, device=device)
        x, cells = _augment(images[idx], targets["cells"][idx], gen)
        batch = {k: v[idx] for k, v in targets.items()}
        outputs = model(x)
        loss = _loss(outputs, batch, cells)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
        running.append(loss.item())
        hits.append((outputs["logits_unbiased"].argmax(1) == batch["largest"]).float().mean().item())
        if step % 100 == 0 or step == steps:
            curve.append({"step": step, "loss": round(float(np.mean(running)), 5),
                          "train_accuracy": round(float(np.mean(hits)), 4)})
            running.clear()
            hits.clear()
            bar.set_postfix(loss=f"{curve[-1]['loss']:.4f}")
            log.info("step %d loss %.4f accuracy %.3f", step, curve[-1]["loss"], curve[-1]["train_accuracy"])
    train_seconds = time.time() - start

    out_dir = save_shapes_features(model.eval(), out_dir)
    # evaluate the weights as shipped (fp16-rounded), not the fp32 ones in memory
    shipped = load_shapes_features(out_dir, device)
    checker_file = Path(checker or EMBEDDED_CHECKER) / CHECKER_WEIGHTS
    report = {
        "recipe": {"seed": seed, "num_scenes": num_scenes, "steps": steps, "batch_size": batch_size,
                   "learning_rate": learning_rate, "widths": list(widths), "feature_dim": feature_dim,
                   "background_dim": background_dim, "eval_scenes": eval_scenes,
                   "world": world.model_dump(mode="json"),
                   "checker_sha256": hashlib.sha256(checker_file.read_bytes()).hexdigest()},
        "parameters": sum(p.numel() for p in model.parameters()),
        "trained_parameters": sum(p.numel() for p in trained),
        "held_out": evaluate_shapes_features(shipped, world, seed + 1, eval_scenes, workers=workers),
        "held_out_degraded": evaluate_shapes_features(shipped, world, seed + 1, eval_scenes,
                                                      blur_sigma=1.0, noise_std=0.03, workers=workers),
        "loss_curve": curve,
        "device": str(device),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "train_seconds": round(train_seconds, 1),
        "seconds": round(time.time() - start, 1),
    }
    atomic_write_json(out_dir / "training.json", report)
    log.info("held-out: %s", {k: report["held_out"][k] for k in ("accuracy", "accuracy_clear")})
    return report
