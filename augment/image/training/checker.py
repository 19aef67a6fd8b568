"""Training and held-out evaluation of the shapes checker (``augment.image.checker``).

The checker learns from real procedural scenes only (uniform colours, every background, with
occlusion), so it shares no weights and no data with the generator it checks. Augmentations
(``REAL_SCENE_SHIFTS``: blur, noise, brightness/contrast) stand in for the ways a generated image
differs from a rendered one; the 8 symmetries of the square act on image and labels together.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from augment.config.image import ShapesLayoutSpec
from augment.config.training import TrainCheckerSpec
from augment.core.devices import resolve_device
from augment.core.training import (Optimisation, Stats, Stopwatch, adamw_one_cycle, parameter_count,
                                   train_loop, write_report)
from augment.image.checker import (ShapesChecker, confusion_matrix, load_checker,
                                   miou_from_confusion, predict, save_checker, score_instances)
from augment.image.layouts import sample_layout
from augment.image.training.augmentations import HELD_OUT_SETTINGS, REAL_SCENE_SHIFTS, augment, degrade
from augment.image.training.scenes import (SceneArrays, render_scenes_parallel,
                                           render_training_scenes, world_layout_spec)
from augment.image.world import CLASSES

log = logging.getLogger(__name__)


def scene_label_maps(scenes: SceneArrays) -> tuple[np.ndarray, np.ndarray]:
    """Per-pixel targets of the checker: class ids and colour ids (0 = background), (N, H, W) uint8."""
    flat = scenes.instance.reshape(len(scenes), -1).astype(np.int64)
    colour_lut = np.concatenate([np.zeros((len(scenes), 1), np.uint8), scenes.colours], axis=1)
    colour = np.take_along_axis(colour_lut, flat, axis=1).reshape(scenes.instance.shape)
    return scenes.semantic(), colour


def _augment(images: torch.Tensor, semantic: torch.Tensor, colour: torch.Tensor,
             gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """images (B, 3, H, W) uint8, labels (B, H, W) uint8 -> float images in [0, 1], long labels."""
    x, (semantic, colour) = augment(images.float() / 255.0, REAL_SCENE_SHIFTS, gen, semantic, colour)
    return x, semantic.long(), colour.long()


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
    images = degrade(scenes.images, blur_sigma, noise_std, seed)
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


def _fit(spec: TrainCheckerSpec, scenes: SceneArrays, device: torch.device) -> tuple[ShapesChecker, list]:
    """Train a fresh checker on ``scenes``; returns it (fp32, eval mode) and its loss curve.

    Loss: cross-entropy of the class head plus cross-entropy of the colour head; AdamW with a
    one-cycle schedule; each step draws ``batch_size`` scenes with replacement and augments them.
    """
    semantic, colour = (torch.from_numpy(a).to(device) for a in scene_label_maps(scenes))
    images = torch.from_numpy(scenes.images).to(device)  # (N, 3, H, W) uint8
    torch.manual_seed(spec.seed)
    model = ShapesChecker(spec.widths).to(device).to(memory_format=torch.channels_last)
    gen = torch.Generator(device=device).manual_seed(spec.seed)

    def draw() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        idx = torch.randint(len(images), (spec.batch_size,), generator=gen, device=device)
        return _augment(images[idx], semantic[idx], colour[idx], gen)

    def loss(batch: tuple[torch.Tensor, torch.Tensor, torch.Tensor]) -> Stats:
        x, y_class, y_colour = batch
        class_logits, colour_logits = model(x.contiguous(memory_format=torch.channels_last))
        return {"loss": F.cross_entropy(class_logits, y_class) + F.cross_entropy(colour_logits, y_colour)}

    optimisation = Optimisation(*adamw_one_cycle(model.parameters(), spec.learning_rate, spec.steps))
    curve = train_loop(draw, loss, optimisation, spec.steps, spec.log_every, "train shapes checker")
    return model.to(memory_format=torch.contiguous_format).eval(), curve


def train_checker(spec: TrainCheckerSpec, out_dir: str | Path, workers: int | None = None) -> dict:
    """Train a ``ShapesChecker`` on real scenes and save it with its held-out metrics.

    Scenes ``0 .. num_scenes-1`` of the uniform-colour world (``world_layout_spec(64, skewed=False)``)
    seeded with ``spec.seed`` are rendered once (``workers`` processes; None = one per CPU, same
    scenes whatever the number); held-out metrics come from ``eval_scenes`` scenes of seed
    ``seed + 1``, clean and degraded (``HELD_OUT_SETTINGS``), computed on the weights as shipped
    (fp16). Writes ``out_dir/{model.safetensors, config.json, training.json}`` and returns
    training.json's dict. Same spec -> same data, initial weights and batches.
    """
    watch = Stopwatch()
    world = world_layout_spec(64, skewed=False)
    scenes = render_training_scenes(world, spec.seed, spec.num_scenes, workers)
    device = resolve_device(spec.device)
    model, curve = _fit(spec, scenes, device)
    watch.end_training()

    out_dir = save_checker(model, out_dir)
    shipped = load_checker(out_dir, device)
    held_out = {name: evaluate_checker(shipped, world, spec.seed + 1, spec.eval_scenes, workers=workers,
                                       **settings) for name, settings in HELD_OUT_SETTINGS.items()}
    report = write_report(out_dir, spec, watch, device,
                          {"parameters": parameter_count(model), **held_out, "loss_curve": curve},
                          {"world": world.model_dump(mode="json")})
    log.info("held-out: %s", {k: report["held_out"][k] for k in ("miou", "colour_instance_accuracy")})
    return report
