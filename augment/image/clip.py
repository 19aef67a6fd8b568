"""The one CLIP path of synthmill: loading, prompts, instance crops and zero-shot classification,
shared by generation-time verification (``crop_scores``) and evaluation (CLIPScore, crop accuracy,
colour audits), so both judge an instance by the same crop, template and model.

Models: the embedded shapes CLIP, or a user's open_clip model from a local file.

``shapes-clip-tiny`` is an open_clip architecture (CLIP's modified ResNet, one bottleneck block per
stage and attention pooling, on 64x64 images, and a 4-layer text transformer over open_clip's
standard BPE vocabulary, so ``open_clip.get_tokenizer`` works offline) trained contrastively
(Radford et al. 2021) on real shapes-world scenes and their captions by
``evaluation.image.training.clip``. Its config lives beside its
weights in ``evaluation/assets/shapes-clip`` and is registered with ``open_clip.add_model_config``
on first use, so ``open_clip.create_model("shapes-clip-tiny")`` works afterwards too.

Weights load from safetensors files only (no pickle). Images go through the model's own
normalisation and resizing in tensor form (``model_input``), so uint8 tensors need no PIL round trip.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np
import open_clip
import torch
import torch.nn.functional as F
from safetensors import SafetensorError

from torchvision.ops import roi_align

from augment.core.io import sha256_file
from augment.image.layout_types import Layout

EMBEDDED_CLIP = Path(__file__).resolve().parents[1] / "assets" / "shapes-clip"
TEMPLATE = "a photo of a {}"
"""Zero-shot prompt of an instance's class (CLIP's standard template)."""
COLOUR_TEMPLATE = "a {} shape"
"""Zero-shot prompt of an instance's colour; the embedded shapes CLIP was trained with both."""
EMBEDDED_NAME = "shapes-clip-tiny"
CONFIG_NAME = f"{EMBEDDED_NAME}.json"  # open_clip names a registered config after its file stem
WEIGHTS_NAME = "open_clip_model.safetensors"

_HOW_TO_SUPPLY = ("pass checkpoint= the path of a local open_clip .safetensors file for this "
                  "architecture (e.g. open_clip_model.safetensors from the model's Hugging Face "
                  "page, downloaded on a machine with internet)")


def register_shapes_clip() -> None:
    """Register the embedded ``shapes-clip-tiny`` config with open_clip (idempotent)."""
    if EMBEDDED_NAME not in open_clip.list_models():
        config = EMBEDDED_CLIP / CONFIG_NAME
        if not config.is_file():
            raise FileNotFoundError(f"{config}: shapes CLIP config not found (reinstall synthmill)")
        open_clip.add_model_config(config)


def checkpoint_path(name: str = EMBEDDED_NAME, checkpoint: str | Path | None = None) -> Path:
    """The weights file ``load_clip(name, checkpoint)`` reads; raises if it is missing or not safetensors."""
    if checkpoint is None:
        if name != EMBEDDED_NAME:
            raise ValueError(f"no embedded weights for open_clip model {name!r}: {_HOW_TO_SUPPLY}")
        path = EMBEDDED_CLIP / WEIGHTS_NAME
        if not path.is_file():
            raise FileNotFoundError(f"{path}: embedded shapes CLIP weights not found; train them with "
                                    "evaluation.image.training.clip.train_shapes_clip or reinstall synthmill")
        return path
    path = Path(checkpoint)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: CLIP checkpoint not found; {_HOW_TO_SUPPLY}")
    if path.suffix != ".safetensors":
        raise ValueError(f"{path}: only .safetensors checkpoints are loaded (no pickle files); "
                         "convert it with safetensors.torch.save_file(torch.load(...)) where you trust it")
    return path


def load_clip(name: str = EMBEDDED_NAME, checkpoint: str | Path | None = None,
              device: str | torch.device = "cpu"):
    """Load an open_clip model in eval mode, once per process: ``(model, preprocess, tokenizer)``.

    ``checkpoint=None`` loads the embedded shapes CLIP (only for ``name="shapes-clip-tiny"``);
    otherwise ``name`` is an open_clip architecture (``open_clip.list_models()``, e.g. "ViT-B-32")
    or the path of an open_clip model-config ``.json`` (registered on first use), and
    ``checkpoint`` a local .safetensors file of its weights. ``preprocess`` is open_clip's PIL
    inference transform; ``tokenizer(list[str]) -> (T, context_length) long``. Raises
    ``FileNotFoundError`` / ``ValueError`` naming the missing or unusable file or name.
    """
    return _load_clip(str(name), None if checkpoint is None else str(Path(checkpoint).expanduser()),
                      str(device))


@lru_cache(maxsize=2)
def _load_clip(name: str, checkpoint: str | None, device: str):
    register_shapes_clip()
    if name.startswith(("hf-hub:", "local-dir:")):
        raise ValueError(f"clip model {name!r} would load weights from elsewhere; give an "
                         "open_clip architecture name or a config .json file")
    if name.endswith(".json"):
        if not Path(name).is_file():
            raise FileNotFoundError(f"{name}: open_clip model config file does not exist")
        open_clip.add_model_config(name)
        name = Path(name).stem
    path = checkpoint_path(name, checkpoint)
    if name not in open_clip.list_models():
        raise ValueError(f"unknown open_clip architecture {name!r}; see open_clip.list_models()")
    try:
        model, _, preprocess = open_clip.create_model_and_transforms(
            name, pretrained=str(path), device=device)
    except (SafetensorError, RuntimeError, KeyError, ValueError) as exc:
        raise ValueError(f"{path}: not valid weights for open_clip model {name!r}: {exc}") from exc
    return model.eval(), preprocess, open_clip.get_tokenizer(name)


def weights_sha256(name: str = EMBEDDED_NAME, checkpoint: str | Path | None = None) -> str:
    """Hex SHA-256 of the weights file ``load_clip(name, checkpoint)`` reads (a feature-cache key)."""
    return sha256_file(checkpoint_path(name, checkpoint))


def as_image_tensor(images: np.ndarray | torch.Tensor) -> torch.Tensor:
    """uint8 numpy (B, H, W, 3) or a tensor (B, 3, H, W) -> the same pixels as a (B, 3, H, W) tensor.

    Tensors may be uint8 (0..255) or float (0..1); they are returned as they are.
    """
    if isinstance(images, np.ndarray):
        if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] != 3:
            raise ValueError(f"numpy images must be uint8 (B, H, W, 3), got {images.dtype} {images.shape}")
        return torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2)
    if images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"tensor images must be (B, 3, H, W), got {tuple(images.shape)}")
    return images


def input_size(model) -> int:
    """Side S of the model's square input images (open_clip's preprocess config)."""
    size = open_clip.get_model_preprocess_cfg(model)["size"]
    if isinstance(size, (tuple, list)):
        if size[0] != size[1]:
            raise ValueError(f"model input size {tuple(size)} is not square")
        size = size[0]
    return int(size)


def model_input(model, images: torch.Tensor) -> torch.Tensor:
    """The tensor form of the model's inference preprocessing: (B, 3, S, S) float, normalised.

    ``images``: (B, 3, H, W), uint8 0..255 or float 0..1. As open_clip's ``preprocess`` does:
    resize ("shortest": shorter side to S, then centre crop; "squash": to S x S), then
    ``(x - mean) / std``. Images already S x S are not resampled, so the result equals
    ``preprocess`` applied to the same image as PIL (up to float rounding); otherwise it differs
    only by the resize kernel (torch's antialiased bicubic vs PIL's, no rounding to uint8).
    """
    cfg = open_clip.get_model_preprocess_cfg(model)
    s = input_size(model)
    x = images.float() / 255.0 if images.dtype == torch.uint8 else images.float()
    if tuple(x.shape[-2:]) != (s, s):
        x = _resize(x, s, cfg.get("resize_mode", "shortest"), cfg.get("interpolation", "bicubic"))
    mean = torch.tensor(cfg["mean"], dtype=x.dtype, device=x.device)[:, None, None]
    std = torch.tensor(cfg["std"], dtype=x.dtype, device=x.device)[:, None, None]
    return (x - mean) / std


def _resize(x: torch.Tensor, s: int, mode: str, interpolation: str) -> torch.Tensor:
    """Resize (B, 3, H, W) float 0..1 to (B, 3, s, s) like open_clip's inference transform."""
    if mode == "squash":
        return _interpolate(x, (s, s), interpolation)
    if mode != "shortest":
        raise ValueError(f"resize_mode {mode!r} is not supported here; pass images of {s}x{s} pixels")
    h, w = x.shape[-2:]
    # torchvision Resize(int): the shorter side becomes s, the longer one int(s * long / short)
    new = (s, int(s * w / h)) if h <= w else (int(s * h / w), s)
    x = _interpolate(x, new, interpolation)
    top, left = int(round((new[0] - s) / 2.0)), int(round((new[1] - s) / 2.0))  # CenterCrop
    return x[..., top:top + s, left:left + s]


def _interpolate(x: torch.Tensor, size: tuple[int, int], interpolation: str) -> torch.Tensor:
    if interpolation == "nearest":
        return F.interpolate(x, size=size, mode="nearest")
    # antialias like PIL when shrinking; clamp because PIL's bicubic output is clipped to 0..255
    return F.interpolate(x, size=size, mode=interpolation, antialias=True,
                         align_corners=False).clamp(0.0, 1.0)


@torch.no_grad()
def encode_images(model, images: np.ndarray | torch.Tensor, batch_size: int = 256) -> np.ndarray:
    """L2-normalised image embeddings (B, D) float32 numpy.

    ``images``: uint8 numpy (B, H, W, 3), or a tensor (B, 3, H, W) uint8 0..255 or float 0..1;
    preprocessed by ``model_input``. Rows do not depend on ``batch_size`` beyond float rounding.
    """
    images = as_image_tensor(images)
    device = next(model.parameters()).device
    parts = [model.encode_image(model_input(model, batch.to(device)), normalize=True).float().cpu()
             for batch in images.split(batch_size)]
    return torch.cat(parts).numpy()


@torch.no_grad()
def encode_texts(model, tokenizer, texts: list[str], batch_size: int = 256) -> np.ndarray:
    """L2-normalised text embeddings (T, D) float32 numpy of ``texts`` (tokenised by ``tokenizer``)."""
    if isinstance(texts, str):
        raise ValueError("texts must be a list of strings, not one string")
    device = next(model.parameters()).device
    # at least one (possibly empty) batch, so no texts give a (0, D) array
    parts = [model.encode_text(tokenizer(list(texts[i:i + batch_size])).to(device), normalize=True)
             .float().cpu() for i in range(0, max(len(texts), 1), batch_size)]
    return torch.cat(parts).numpy()


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
                   class_names: list[str], template: str = TEMPLATE,
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


@torch.no_grad()
def crop_scores(clip, images: np.ndarray, layouts: list[Layout], categories: list[str],
                margin: float = 0.15) -> list[list[dict]]:
    """Verification of each instance (drawing order) by its crop (``crop_boxes`` around its visible
    pixels, ``margin`` of its longer side), classified zero-shot against ``TEMPLATE`` for every
    class of ``categories``: ``verify_clip`` is the probability of the instance's own class,
    ``clip_pred`` the most probable class. ``clip`` is ``load_clip``'s triple; ``images`` uint8
    (B, H, W, 3). An instance with no visible pixel scores 0.0 (its label cannot be right)."""
    model, _, tokenizer = clip
    boxes, where = [], []
    for b, layout in enumerate(layouts):
        found = crop_boxes(instance_map=layout.instance_map, num_instances=len(layout.instances),
                           margin=margin)
        visible = np.isfinite(found).all(axis=1)
        boxes.append(found[visible])
        where += [(b, int(k)) for k in np.flatnonzero(visible)]
    scores = [[{"verify_clip": 0.0, "clip_pred": None} for _ in layout.instances]
              for layout in layouts]
    if not where:
        return scores
    probs, predicted = classify_crops(model, tokenizer, images, boxes, list(categories))
    for (b, k), p, top in zip(where, probs, predicted):
        true = categories.index(layouts[b].instances[k].category)
        scores[b][k] = {"verify_clip": float(p[true]), "clip_pred": categories[int(top)]}
    return scores
