"""CLIP alignment: CLIPScore of image/caption pairs and zero-shot classification of instance crops.

The metrics are pure functions of L2-normalised features (``evaluation.image.clip_models.encode_images``
/ ``encode_texts``), so one cached feature pass serves all of them. ``classify_crops`` is the one
function that runs a model: it crops instances (``crop_boxes``), embeds the crops and classifies
them zero-shot against prompts, as X-Paste (Zhao et al. 2023) filters pasted instances with CLIP.
"""

from __future__ import annotations

import numpy as np
import torch
from torchvision.ops import roi_align

from evaluation.image.clip_models import as_image_tensor, encode_images, encode_texts, input_size

SHAPE_TEMPLATE = "a photo of a {}"
"""Zero-shot prompt for an instance's shape class (CLIP's standard template)."""
COLOUR_TEMPLATE = "a {} shape"
"""Zero-shot prompt for an instance's colour; the embedded shapes CLIP was trained with both."""


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


def zero_shot(features: np.ndarray, text_features: np.ndarray, logit_scale: float) -> np.ndarray:
    """Zero-shot class probabilities (Radford et al. 2021): ``softmax(logit_scale * cos)``.

    ``features`` (N, D) and ``text_features`` (K, D), L2-normalised; ``logit_scale`` is the
    model's multiplier (``model.logit_scale.exp()``, 100 for OpenAI CLIP). Returns (N, K) float64.
    """
    features = np.asarray(features, dtype=np.float64)
    text_features = np.asarray(text_features, dtype=np.float64)
    logits = logit_scale * features @ text_features.T
    logits -= logits.max(axis=1, keepdims=True)  # stable softmax
    probs = np.exp(logits)
    return probs / probs.sum(axis=1, keepdims=True)


def crop_boxes(instance_map: np.ndarray | None = None, boxes: np.ndarray | None = None,
               margin: float = 0.15, image_size: tuple[int, int] | None = None,
               num_instances: int | None = None) -> np.ndarray:
    """Square crop boxes around instances, (N, 4) float32 ``(x0, y0, x1, y1)`` in pixel corners.

    Give either ``instance_map`` (H, W) integer (0 = background, k = instance k; the box of k is
    the extent of its visible pixels; ``num_instances`` defaults to the largest id, and an instance
    with no visible pixel gets a row of NaN) or ``boxes`` (N, 4) xyxy with ``image_size = (H, W)``.
    Each box grows by ``margin`` times its longer side on every side and becomes a square (so a
    resized crop keeps the shape's proportions), shifted, not clipped, to stay inside the image;
    only a square larger than the image is cut to it.
    """
    if (instance_map is None) == (boxes is None):
        raise ValueError("give exactly one of instance_map and boxes")
    if instance_map is not None:
        instance_map = np.asarray(instance_map)
        if instance_map.ndim != 2 or not np.issubdtype(instance_map.dtype, np.integer):
            raise ValueError(f"instance_map must be an integer (H, W) array, got {instance_map.dtype} "
                             f"{instance_map.shape}")
        height, width = instance_map.shape
        count = int(instance_map.max(initial=0)) if num_instances is None else num_instances
        boxes = np.full((count, 4), np.nan)
        for k in range(count):
            ys, xs = np.nonzero(instance_map == k + 1)
            if len(xs):
                boxes[k] = xs.min(), ys.min(), xs.max() + 1, ys.max() + 1
    else:
        if image_size is None:
            raise ValueError("boxes need image_size=(H, W) to keep crops inside the image")
        height, width = image_size
        boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    side = np.maximum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]) * (1 + 2 * margin)
    out = np.empty_like(boxes)
    for lo, hi, limit in ((0, 2, width), (1, 3, height)):
        start = np.clip((boxes[:, lo] + boxes[:, hi] - side) / 2, 0, np.maximum(limit - side, 0))
        out[:, lo], out[:, hi] = start, np.minimum(start + side, limit)
    return out.astype(np.float32)


def crop_images(images: np.ndarray | torch.Tensor, boxes: list[np.ndarray], size: int) -> torch.Tensor:
    """Crop boxes out of images and resize them to ``size`` x ``size``: (N, 3, S, S) float 0..1.

    ``images``: uint8 numpy (B, H, W, 3) or a tensor (B, 3, H, W) uint8 or float 0..1;
    ``boxes``: one (N_b, 4) xyxy array per image, crops returned in that order. Resampling is
    bilinear (``roi_align`` with pixel-centre alignment), averaging several samples per output
    pixel when a crop shrinks.
    """
    images = as_image_tensor(images)
    if len(boxes) != len(images):
        raise ValueError(f"got {len(images)} images but {len(boxes)} box arrays")
    x = images.float() / 255.0 if images.dtype == torch.uint8 else images.float()
    rois = [torch.as_tensor(np.asarray(b, dtype=np.float32).reshape(-1, 4), device=x.device)
            for b in boxes]
    for i, b in enumerate(rois):
        if not torch.isfinite(b).all():
            raise ValueError(f"boxes of image {i} contain NaN/inf (an instance with no visible pixels?)")
    return roi_align(x, rois, output_size=size, spatial_scale=1.0, sampling_ratio=-1, aligned=True)


def classify_crops(model, tokenizer, images: np.ndarray | torch.Tensor, boxes: list[np.ndarray],
                   class_names: list[str], template: str = SHAPE_TEMPLATE,
                   batch_size: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """Zero-shot classification of instance crops against ``template.format(name)`` prompts.

    ``images`` and ``boxes`` as in ``crop_images`` (boxes usually from ``crop_boxes``); crops are
    resized to the model's input size and embedded with ``encode_images``. Returns
    ``(probs (N, K) float64, predicted index (N,) int64)`` over the N crops in order.
    """
    images = as_image_tensor(images)
    if len(boxes) != len(images):
        raise ValueError(f"got {len(images)} images but {len(boxes)} box arrays")
    size = input_size(model)
    text_features = encode_texts(model, tokenizer, [template.format(name) for name in class_names])
    features = [np.zeros((0, text_features.shape[1]), np.float32)]
    for start in range(0, len(images), batch_size):  # crop a chunk of images at a time: bounded memory
        crops = crop_images(images[start:start + batch_size], boxes[start:start + batch_size], size)
        if len(crops):
            features.append(encode_images(model, crops, batch_size))
    probs = zero_shot(np.concatenate(features), text_features, float(model.logit_scale.detach().exp()))
    return probs, probs.argmax(axis=1)
