"""CLIP alignment: CLIPScore of image/caption pairs and zero-shot accuracy of instance crops.

The scores are pure functions of L2-normalised features (``augment.image.clip.encode_images`` /
``encode_texts``), so one cached feature pass (``clip_extractor``) serves all of them; crops and
zero-shot classification are ``augment.image.clip``'s, the same as generation-time verification
uses. Importing this module imports open_clip.
"""

from __future__ import annotations

from functools import partial

import numpy as np

from augment.image.clip import (TEMPLATE, crop_boxes, crop_images, encode_images, encode_texts,
                                input_size, load_clip, weights_sha256, zero_shot)
from augment.image.layout_types import Layout
from evaluation.config import EvalSpec
from evaluation.features import FunctionExtractor, compute_features
from evaluation.figures import Figure
from evaluation.image.sets import ImageSet, stack_resized
from evaluation.inputs import MetricInputs
from evaluation.stats import mean_ci, proportion_figure


def _cosine_rows(image_features: np.ndarray, text_features: np.ndarray) -> np.ndarray:
    """Cosine similarity of matching rows, (N,) float64."""
    a = np.asarray(image_features, dtype=np.float64)
    b = np.asarray(text_features, dtype=np.float64)
    if a.ndim != 2 or a.shape != b.shape:
        raise ValueError(f"features must be two (N, D) arrays of one shape, got {a.shape} and {b.shape}")
    return (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


def clip_score(image_features: np.ndarray, text_features: np.ndarray, w: float = 2.5) -> np.ndarray:
    """CLIPScore of Hessel et al. 2021, per pair: ``w * max(cos(v_i, c_i), 0)``, (N,) float64.

    ``image_features`` / ``text_features``: (N, D) features of matching rows (image i was made from
    caption i). The paper's ``w = 2.5`` stretches CLIP's usual cosine range to about 0..1.
    """
    return w * np.maximum(_cosine_rows(image_features, text_features), 0.0)


def clip_score_100(image_features: np.ndarray, text_features: np.ndarray) -> np.ndarray:
    """The ``100 * cos`` variant of CLIPScore per pair, (N,) float64, not clipped.

    torchmetrics' ``CLIPScore`` reports ``max(mean(100 * cos), 0)`` over a set; the per-pair values
    here stay unclipped so their mean and confidence interval are unbiased.
    """
    return 100.0 * _cosine_rows(image_features, text_features)


# The CLIP extractor and the ``clip`` metric (``evaluation.registry``) ------------------------------

def clip_extractor(spec: EvalSpec, image_set: ImageSet) -> FunctionExtractor:
    """CLIP image embeddings and, when the set has layouts, one embedding per visible instance crop.

    Outputs: ``image`` (B, D); ``crops`` (M, D), ``crop_row`` (M,) set row, ``crop_instance`` (M,)
    index in the layout's instances. Zero-shot labels are applied later, from text embeddings, so
    the cached features do not depend on the class list.
    """
    model, _, _ = load_clip(spec.clip_model, spec.clip_checkpoint, spec.device)
    size = input_size(model)

    def fn(images, rows):
        out = {"image": encode_images(model, images, spec.batch_size)}
        boxes, crop_row, crop_inst = [], [], []
        for image, row in zip(images, rows):
            keep = np.zeros((0, 4), np.float32)
            if image_set.layouts is not None:
                layout = image_set.layout(row)
                found = crop_boxes(instance_map=_resized_map(layout, image.shape[-2:]),
                                   num_instances=len(layout.instances))
                ok = np.isfinite(found).all(axis=1)
                keep = found[ok]
                crop_row += [row] * int(ok.sum())
                crop_inst += np.flatnonzero(ok).tolist()
            boxes.append(keep)
        dim = out["image"].shape[1]
        crops = crop_images(images, boxes, size) if crop_row else None
        out["crops"] = (encode_images(model, crops, spec.batch_size) if crops is not None
                        else np.zeros((0, dim), np.float32))
        out["crop_row"] = np.asarray(crop_row, np.int64)
        out["crop_instance"] = np.asarray(crop_inst, np.int64)
        return out

    return FunctionExtractor(f"clip-{spec.clip_model}",
                             weights_sha256(spec.clip_model, spec.clip_checkpoint)[:16],
                             partial(stack_resized, size=None), fn, spec.batch_size)


def _resized_map(layout: Layout, shape) -> np.ndarray:
    """The layout's instance map at the image's size (nearest neighbour)."""
    inst = layout.instance_map
    h, w = int(shape[0]), int(shape[1])
    if inst.shape == (h, w):
        return inst
    ys = (np.arange(h) * inst.shape[0] / h).astype(int)
    xs = (np.arange(w) * inst.shape[1] / w).astype(int)
    return inst[ys][:, xs]


def score_clip(inputs: MetricInputs) -> list[Figure]:
    """CLIPScore of each image against its caption, and zero-shot accuracy of instance crops
    against the class names (overall and per class of ``min_group_size`` or more crops)."""
    spec, image_set = inputs.spec, inputs.sample_set
    model, _, tokenizer = load_clip(spec.clip_model, spec.clip_checkpoint, spec.device)
    arrays = inputs.arrays("clip")
    out = []
    if image_set.captions:
        captions = [image_set.captions[r] for r in inputs.features.rows]
        text = encode_texts(model, tokenizer, captions)
        for metric, scores, formula in (
                ("clip_score", clip_score(arrays["image"], text), "2.5 * max(cos, 0)"),
                ("clip_score_100", clip_score_100(arrays["image"], text), "100 * cos")):
            mean, lo, hi = mean_ci(scores, seed=spec.seed, confidence=spec.confidence)
            out.append(Figure(metric, mean, lo, hi, len(scores), "all",
                              f"CLIPScore (Hessel et al. 2021) = {formula}, image vs caption; "
                              f"model {spec.clip_model}"))
    if image_set.layouts and len(arrays["crops"]):
        out += _crop_accuracy(image_set, arrays, model, tokenizer, spec)
    return out


def _crop_accuracy(image_set: ImageSet, arrays: dict, model, tokenizer,
                   spec: EvalSpec) -> list[Figure]:
    layouts = [image_set.layout(r) for r in arrays["crop_row"]]
    truth = np.asarray([lay.instances[i].category
                        for lay, i in zip(layouts, arrays["crop_instance"])])
    categories = {g.split("=", 1)[1] for g in image_set.groups if g.startswith("class=")}
    names = sorted(set(truth.tolist()) | categories)
    text = encode_texts(model, tokenizer, [TEMPLATE.format(n) for n in names])
    scale = float(model.logit_scale.detach().exp())
    correct = np.asarray(names)[zero_shot(arrays["crops"], text, scale).argmax(1)] == truth
    out = [proportion_figure("clip_crop_accuracy", correct, "all", spec.confidence,
                             f"zero-shot '{TEMPLATE}' over {len(names)} classes")]
    for cls in names:
        mask = truth == cls
        if mask.sum() >= spec.min_group_size:
            out.append(proportion_figure("clip_crop_accuracy", correct[mask], f"class={cls}",
                                         spec.confidence, "zero-shot crop classification"))
    return out


def zero_shot_crops(image_set: ImageSet, spec: EvalSpec,
                    prompts: list[str]) -> dict[tuple[int, int], int]:
    """(set row, instance) -> index of the prompt CLIP gives each instance crop (features from the
    evaluation cache)."""
    extractor = clip_extractor(spec, image_set)
    arrays = compute_features(image_set, [extractor], spec.cache_dir).arrays[extractor.name]
    model, _, tokenizer = load_clip(spec.clip_model, spec.clip_checkpoint, spec.device)
    probs = zero_shot(arrays["crops"], encode_texts(model, tokenizer, prompts),
                      float(model.logit_scale.detach().exp()))
    return {(int(r), int(i)): int(p) for r, i, p in
            zip(arrays["crop_row"], arrays["crop_instance"], probs.argmax(1))}
