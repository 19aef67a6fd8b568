"""CLIP models for evaluation: the embedded shapes CLIP, or a user's open_clip model from a local file.

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

import hashlib
from pathlib import Path

import numpy as np
import open_clip
import torch
import torch.nn.functional as F
from safetensors import SafetensorError

EMBEDDED_CLIP = Path(__file__).resolve().parents[1] / "assets" / "shapes-clip"
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
    """Load an open_clip model in eval mode: ``(model, preprocess, tokenizer)``.

    ``checkpoint=None`` loads the embedded shapes CLIP (only for ``name="shapes-clip-tiny"``);
    otherwise ``name`` is an open_clip architecture (``open_clip.list_models()``, e.g. "ViT-B-32")
    and ``checkpoint`` a local .safetensors file of its weights. ``preprocess`` is open_clip's PIL
    inference transform; ``tokenizer(list[str]) -> (T, context_length) long``. Raises
    ``FileNotFoundError`` / ``ValueError`` naming the missing or unusable file or name.
    """
    register_shapes_clip()
    path = checkpoint_path(name, checkpoint)
    if name not in open_clip.list_models():
        raise ValueError(f"unknown open_clip architecture {name!r}; see open_clip.list_models()")
    try:
        model, _, preprocess = open_clip.create_model_and_transforms(
            name, pretrained=str(path), device=device)
    except (SafetensorError, RuntimeError, KeyError) as exc:
        raise ValueError(f"{path}: not valid weights for open_clip model {name!r}: {exc}") from exc
    return model.eval(), preprocess, open_clip.get_tokenizer(name)


def weights_sha256(name: str = EMBEDDED_NAME, checkpoint: str | Path | None = None) -> str:
    """Hex SHA-256 of the weights file ``load_clip(name, checkpoint)`` reads (a feature-cache key)."""
    digest = hashlib.sha256()
    with open(checkpoint_path(name, checkpoint), "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


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
