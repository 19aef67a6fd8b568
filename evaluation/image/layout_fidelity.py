"""Layout fidelity: do generated images obey the layout they were conditioned on?

An independent segmenter (the shapes checker, trained on real scenes only) labels each generated
image; its prediction is compared with the condition: semantic mIoU against the condition's
semantic mask (accumulated over the whole set, the PASCAL VOC convention), and the colour accuracy
of instances whose colour the condition specified. The checker's own score on real scenes is the
ceiling a perfect generator would reach.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image
from scipy import ndimage

from augment.image.checker import (confusion_matrix, load_checker, miou_from_confusion, predict,
                                   score_instances)
from augment.image.layout_types import Layout
from augment.image.layouts import render_scene
from augment.image.world import CLASSES
from evaluation.figures import Figure
from evaluation.inputs import MetricInputs
from evaluation.stats import bootstrap_ci, proportion_figure, wilson_interval


def fidelity_from_predictions(semantic_pred, colour_pred, layouts: list[Layout]) -> dict:
    """mIoU (with and without background) and specified-colour accuracy for one set.

    ``semantic_pred``/``colour_pred``: (N, H, W) integer predictions of the checker.
    """
    num_classes = len(CLASSES) + 1
    conf = np.zeros((num_classes, num_classes), dtype=np.int64)
    correct = total = 0
    for i, layout in enumerate(layouts):
        conf += confusion_matrix(semantic_pred[i], layout.semantic_map, num_classes)
        for score in score_instances(semantic_pred[i], colour_pred[i], layout):
            if score["colour_ok"] is not None:
                total += 1
                correct += bool(score["colour_ok"])
    miou, per_class = miou_from_confusion(conf)
    fg_miou, _ = miou_from_confusion(conf[1:, 1:])
    return {"miou": miou, "miou_foreground": fg_miou,
            "per_class_iou": {name: float(v) for name, v in zip(("background",) + CLASSES, per_class)},
            "colour_accuracy": correct / total if total else float("nan"),
            "n_images": len(layouts), "n_coloured_instances": total}


def box_recall(semantic_pred: np.ndarray, layouts: list[Layout], threshold: float = 0.5) -> np.ndarray:
    """Per condition instance: does a connected checker segment of its class overlap its box at
    IoU >= ``threshold``? Returns a bool array over all visible instances, in layout order."""
    hits = []
    for pred, layout in zip(semantic_pred, layouts):
        boxes_by_class: dict[int, list[tuple]] = {}
        for k, inst in enumerate(layout.instances):
            ys, xs = np.nonzero(layout.instance_map == k + 1)
            if not len(xs):
                continue
            cid = inst.category_id
            if cid not in boxes_by_class:
                labels, count = ndimage.label(pred == cid)
                boxes_by_class[cid] = [(s[1].start, s[0].start, s[1].stop, s[0].stop)
                                       for s in ndimage.find_objects(labels) if s is not None]
            truth = (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1)
            hits.append(any(_box_iou(truth, b) >= threshold for b in boxes_by_class[cid]))
    return np.asarray(hits, dtype=bool)


def _box_iou(a, b) -> float:
    iw = max(0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union else 0.0


def dataset_layout_fidelity(root: str | Path, checker=None, batch_size: int = 128) -> dict:
    """Layout fidelity of every generated sample (status ok) of a synthmill dataset folder."""
    root = Path(root)
    manifest = pd.read_parquet(root / "manifest.parquet")
    manifest = manifest[manifest["status"] != "failed"]
    checker = checker or load_checker()
    layouts, sem, col = [], [], []
    for start in range(0, len(manifest), batch_size):
        rows = manifest.iloc[start:start + batch_size]
        images = np.stack([np.asarray(Image.open(root / p).convert("RGB")) for p in rows["image"]])
        s, c = predict(checker, images)
        sem.append(s.numpy())
        col.append(c.numpy())
        layouts += [Layout.from_json(text) for text in rows["layout"]]
    result = fidelity_from_predictions(np.concatenate(sem), np.concatenate(col), layouts)
    result["kept_share"] = float(manifest["kept"].mean())
    return result


def real_scene_ceiling(layouts: list[Layout], checker=None) -> dict:
    """The same figures for real procedural renders of the same layouts (the checker's ceiling)."""
    checker = checker or load_checker()
    images = np.stack([render_scene(layout) for layout in layouts])
    s, c = predict(checker, images)
    return fidelity_from_predictions(s.numpy(), c.numpy(), layouts)


def summary_line(name: str, figures: dict) -> str:
    return (f"{name}: mIoU {figures['miou']:.3f} (foreground {figures['miou_foreground']:.3f}), "
            f"colour accuracy {figures['colour_accuracy']:.3f} over "
            f"{figures['n_coloured_instances']} instances, {figures['n_images']} images")


def to_json(figures: dict) -> str:
    return json.dumps(figures, indent=2)


# The ``layout`` metric (``evaluation.registry``) --------------------------------------------------

_CEILING_LAYOUTS = 64  # the ceiling is a reference point printed in details, not a figure


def score_layout(inputs: MetricInputs) -> list[Figure]:
    """Checker-based layout fidelity of the set, with the checker's own score on real renders of
    its first layouts as the ceiling."""
    spec, preds = inputs.spec, inputs.arrays("checker")
    layouts = [inputs.sample_set.layout(r) for r in inputs.features.rows]
    figs = fidelity_from_predictions(preds["semantic"], preds["colour"], layouts)
    ceiling_n = min(len(layouts), _CEILING_LAYOUTS)
    ceiling = real_scene_ceiling(layouts[:ceiling_n])
    hits = box_recall(preds["semantic"], layouts)
    miou_lo, miou_hi = _bootstrap_miou(preds["semantic"], layouts, min(spec.bootstrap_rounds, 200),
                                       spec.confidence, spec.seed)
    out = [Figure("layout_miou", figs["miou"], miou_lo, miou_hi, len(layouts), "all",
                  f"checker segmentation vs condition masks; checker on real renders of the first "
                  f"{ceiling_n} of these layouts (ceiling): {ceiling['miou']:.3f}")]
    colour_n = figs["n_coloured_instances"]
    if colour_n:
        k = round(figs["colour_accuracy"] * colour_n)
        lo, hi = wilson_interval(k, colour_n, spec.confidence)
        out.append(Figure("layout_colour_accuracy", figs["colour_accuracy"], lo, hi, colour_n,
                          "all", f"instances with a specified colour; ceiling "
                                 f"{ceiling['colour_accuracy']:.3f}; Wilson interval"))
    out.append(proportion_figure("layout_box_recall_iou50", hits, "all", spec.confidence,
                                 "condition boxes matched by a checker segment of the class at "
                                 "IoU>=0.5"))
    for name, iou in figs["per_class_iou"].items():
        if name != "background" and iou is not None and np.isfinite(iou):
            out.append(Figure("layout_iou", float(iou), float("nan"), float("nan"),
                              len(layouts), f"class={name}", "checker IoU of this class"))
    return out


def _bootstrap_miou(semantic: np.ndarray, layouts: list[Layout], rounds: int, confidence: float,
                    seed: int) -> tuple[float, float]:
    """Percentile interval of the set's mIoU over images resampled with replacement."""
    k = int(max(semantic.max(), max(l.semantic_map.max() for l in layouts))) + 1
    k = max(k, 6)
    confs = np.stack([confusion_matrix(semantic[i], layouts[i].semantic_map, k)
                      for i in range(len(layouts))])
    return bootstrap_ci(lambda idx: miou_from_confusion(confs[idx].sum(0))[0], len(layouts),
                        rounds, confidence, seed)
