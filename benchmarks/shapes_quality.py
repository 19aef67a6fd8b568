"""Quality bar of the embedded generator: does shapes-tiny obey its layouts?

256 samples from fresh layouts (the demo's sampler settings); the shapes checker, trained on real
scenes only, segments them. Baseline = the same checker on real renders of the same layouts (the
ceiling a perfect generator would reach). Figures: semantic mIoU against the condition masks and
the share of instances with a specified colour that are rendered in that colour.
"""

from __future__ import annotations

import numpy as np

from augment.core.backends import load_backend
from augment.config.base import load_config
from augment.config.image import ShapesLayoutSpec
from flows.config import RunConfig
from augment.core.seeds import sample_seeds
from augment.image.layouts import sample_layout
from augment.image.checker import load_checker, predict
from benchmarks.common import row
from evaluation.image.layout_fidelity import fidelity_from_predictions, real_scene_ceiling, summary_line

NUM_SAMPLES = 256
SEED = 2024  # not the demo's seed: fresh layouts


def run() -> tuple[list[dict], list[str]]:
    job = load_config("configs/demo.yaml", RunConfig).jobs[0]
    sampler = job.sampler
    layout_spec = ShapesLayoutSpec()  # every colour specified, all classes and backgrounds
    layouts = [sample_layout(layout_spec, SEED, i) for i in range(NUM_SAMPLES)]
    seeds = [sample_seeds(SEED, i)[1] for i in range(NUM_SAMPLES)]
    backend = load_backend(job.model)
    images = np.concatenate([backend.render(layouts[i:i + sampler.batch_size], sampler,
                                            seeds[i:i + sampler.batch_size])
                             for i in range(0, NUM_SAMPLES, sampler.batch_size)])
    checker = load_checker()
    semantic, colour = predict(checker, np.clip(np.rint(images * 255), 0, 255).astype(np.uint8))
    ours = fidelity_from_predictions(semantic.numpy(), colour.numpy(), layouts)
    ceiling = real_scene_ceiling(layouts, checker)
    rows = [row("shapes_tiny_miou_vs_real", ours["miou"], ceiling["miou"], "mIoU", 1),
            row("shapes_tiny_colour_accuracy_vs_real", ours["colour_accuracy"],
                ceiling["colour_accuracy"], "share of instances", 1)]
    notes = [f"- quality ({sampler.scheduler}, {sampler.steps} steps, guidance {sampler.guidance}): "
             + summary_line("generated", ours) + "; " + summary_line("real renders", ceiling),
             "- per-class IoU (generated): " + ", ".join(
                 f"{k} {v:.3f}" for k, v in ours["per_class_iou"].items() if v is not None)]
    return rows, notes
