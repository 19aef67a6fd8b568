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

import logging
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from augment.config.image import ShapesLayoutSpec
from augment.config.training import TrainShapesFeaturesSpec
from augment.core.devices import resolve_device
from augment.core.io import sha256_file
from augment.core.training import (Optimisation, Stats, Stopwatch, adamw_one_cycle, parameter_count,
                                   train_loop, write_report)
from augment.image.checker import EMBEDDED_CHECKER, WEIGHTS_NAME as CHECKER_WEIGHTS, load_checker
from augment.image.training.augmentations import HELD_OUT_SETTINGS, REAL_SCENE_SHIFTS, augment, degrade
from augment.image.training.scenes import (SceneArrays, render_scenes_parallel,
                                           render_training_scenes, world_layout_spec)
from augment.image.world import COLOURS
from evaluation.image.shapes_features import (CLASS_NAMES, ShapesFeatureNet, load_shapes_features,
                                              save_shapes_features)

log = logging.getLogger(__name__)

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


def _augment(images: torch.Tensor, cells: torch.Tensor,
             gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """images (B, 3, H, W) uint8, coverage (B, K, H / 8, W / 8) -> float images in [0, 1] and the
    coverage moved with them (8 divides the side, so a flip of the image is exactly a flip of its
    cell grid)."""
    x, (cells,) = augment(images.float() / 255.0, REAL_SCENE_SHIFTS, gen, cells)
    return x, cells


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
    images = degrade(scenes.images, blur_sigma, noise_std, seed)
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


def _model(spec: TrainShapesFeaturesSpec, max_objects: int, device: torch.device) -> ShapesFeatureNet:
    """A fresh ``ShapesFeatureNet`` (seeded with ``spec.seed``) on a frozen copy of the checker."""
    torch.manual_seed(spec.seed)
    front_end = load_checker(spec.checker)  # builds a ShapesChecker: draws from the seeded RNG
    model = ShapesFeatureNet(spec.widths, spec.feature_dim, max_objects=max_objects,
                             checker=front_end.config, background_dim=spec.background_dim)
    model.checker.load_state_dict(front_end.state_dict())
    return model.to(device)


def _fit(spec: TrainShapesFeaturesSpec, scenes: SceneArrays, model: ShapesFeatureNet) -> list:
    """Train the unfrozen part of ``model`` on ``scenes``; returns the loss curve.

    Loss: ``_loss``; AdamW with a one-cycle schedule; each step draws ``batch_size`` scenes with
    replacement and augments them. The curve also has the training accuracy of the class head.
    """
    device = next(model.parameters()).device
    targets = {k: torch.from_numpy(v).to(device) for k, v in scene_targets(scenes).items()}
    images = torch.from_numpy(scenes.images).to(device)  # (N, 3, H, W) uint8
    gen = torch.Generator(device=device).manual_seed(spec.seed)

    def draw() -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
        idx = torch.randint(len(images), (spec.batch_size,), generator=gen, device=device)
        return *_augment(images[idx], targets["cells"][idx], gen), {k: v[idx] for k, v in targets.items()}

    def loss(batch: tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]) -> Stats:
        x, cells, batch_targets = batch
        outputs = model(x)
        hits = outputs["logits_unbiased"].argmax(1) == batch_targets["largest"]
        return {"loss": _loss(outputs, batch_targets, cells), "train_accuracy": hits.float().mean()}

    trained = [p for p in model.parameters() if p.requires_grad]
    optimisation = Optimisation(*adamw_one_cycle(trained, spec.learning_rate, spec.steps))
    return train_loop(draw, loss, optimisation, spec.steps, spec.log_every, "train shapes features")


def train_shapes_features(spec: TrainShapesFeaturesSpec, out_dir: str | Path,
                          workers: int | None = None) -> dict:
    """Train a ``ShapesFeatureNet`` on real scenes and save it with its held-out metrics.

    ``spec.checker`` is the shapes-checker folder copied in as the frozen front end (None = the one
    in ``augment/assets``). Scenes ``0 .. num_scenes-1`` of the uniform-colour world
    (``world_layout_spec(64, skewed=False)``) seeded with ``spec.seed`` are rendered once
    (``workers`` processes; None = one per CPU, same scenes whatever the number); held-out metrics
    come from ``eval_scenes`` scenes of seed ``seed + 1``, clean and degraded
    (``HELD_OUT_SETTINGS``), computed on the weights as shipped (fp16).

    ``background_dim`` features come from a separate background branch (``BackgroundBranch``): read
    from the shared hidden layer alone, the background head stays at chance (held-out ~0.25 of 4),
    because the class, count and coverage losses win that layer; 0 builds the model without it.
    Writes ``out_dir/{model.safetensors, config.json, training.json}`` and returns training.json's
    dict. Same spec and checker -> same data, initial weights and batches.
    """
    watch = Stopwatch()
    world = world_layout_spec(64, skewed=False)
    scenes = render_training_scenes(world, spec.seed, spec.num_scenes, workers)
    device = resolve_device(spec.device)
    model = _model(spec, world.objects_per_image[1], device)
    curve = _fit(spec, scenes, model)
    watch.end_training()

    out_dir = save_shapes_features(model.eval(), out_dir)
    shipped = load_shapes_features(out_dir, device)
    held_out = {name: evaluate_shapes_features(shipped, world, spec.seed + 1, spec.eval_scenes,
                                               workers=workers, **settings)
                for name, settings in HELD_OUT_SETTINGS.items()}
    figures = {"parameters": parameter_count(model),
               "trained_parameters": sum(p.numel() for p in model.parameters() if p.requires_grad),
               **held_out, "loss_curve": curve}
    checker_sha256 = sha256_file(Path(spec.checker or EMBEDDED_CHECKER) / CHECKER_WEIGHTS)
    report = write_report(out_dir, spec, watch, device, figures,
                          {"world": world.model_dump(mode="json"), "checker_sha256": checker_sha256})
    log.info("held-out: %s", {k: report["held_out"][k] for k in ("accuracy", "accuracy_clear")})
    return report
