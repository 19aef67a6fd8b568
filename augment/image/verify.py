"""Verification of generated images by a model that is not the generator: per instance, either the
shapes checker's IoU and colour (``checker``) or open_clip's zero-shot probability of the
instance's class on its crop (``clip``, as X-Paste filters pasted instances)."""

from __future__ import annotations

from functools import lru_cache, partial
from typing import Callable

import numpy as np

from augment.config.image import ImageJob
from augment.core.devices import resolve_device
from augment.image.checker import ShapesChecker, load_checker, predict, score_instances
from augment.image.layout_types import Layout
from augment.image.layouts import layout_categories
from augment.image.clip import crop_scores, load_clip

SCORE_KEYS = {"checker": "verify_iou", "clip": "verify_clip"}
"""The per-instance score each method writes, which ``min_score`` is compared with."""


@lru_cache(maxsize=1)
def _embedded_checker() -> ShapesChecker:
    return load_checker()


def checker_scores(checker: ShapesChecker, images: np.ndarray,
                   layouts: list[Layout]) -> list[list[dict]]:
    """Per-instance checker scores for a batch of uint8 images (B, H, W, 3)."""
    semantic, colour = predict(checker, images)
    return [score_instances(semantic[i], colour[i], layout) for i, layout in enumerate(layouts)]


def load_verifier(job: ImageJob) -> Callable[[np.ndarray, list[Layout]], list[list[dict]]] | None:
    """``(uint8 images (B, H, W, 3), layouts) -> per-instance score dicts`` for the job's
    verification method, or None when it is "none"."""
    method = job.verify.resolved_method(job.model.backend)
    if method == "none":
        return None
    if method == "checker":
        return partial(checker_scores, _embedded_checker())
    clip = load_clip(job.verify.clip_model, job.verify.clip_checkpoint,
                     resolve_device(job.model.device))
    return partial(crop_scores, clip, categories=layout_categories(job.layout),
                   margin=job.verify.clip_margin)


def instance_records(layout: Layout, scores: list[dict] | None) -> list[dict]:
    """The manifest's per-instance records: category, colour (from the condition, or as the
    checker saw it when the condition left it open) and the verification scores."""
    out = []
    for k, inst in enumerate(layout.instances):
        score = scores[k] if scores else {}
        colour, source = inst.colour, "condition" if inst.colour else None
        if colour is None and score.get("colour_pred"):
            colour, source = score["colour_pred"], "checker"
        record = {"category": inst.category, "category_id": inst.category_id,
                  "colour": colour, "colour_source": source,
                  "verify_iou": score.get("verify_iou"), "colour_ok": score.get("colour_ok")}
        if "verify_clip" in score:
            record.update(verify_clip=score["verify_clip"], clip_pred=score["clip_pred"])
        out.append(record)
    return out


def is_kept(job: ImageJob, status: str, instances: list[dict]) -> bool:
    """A sample is kept when it rendered and every instance scores at least ``verify.min_score``
    (and no checked colour is wrong)."""
    if status == "failed":
        return False
    method = job.verify.resolved_method(job.model.backend)
    if method == "none":
        return True
    key = SCORE_KEYS[method]
    return all((i.get(key) is not None and i[key] >= job.verify.min_score)
               and i["colour_ok"] is not False for i in instances)
