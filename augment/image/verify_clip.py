"""Verification of generated instances by open_clip crop classification.

As X-Paste (Zhao et al., ICML 2023) filters its generated instances with CLIP: each instance's box
(plus a margin) is cropped from the generated image and classified zero-shot against
"a photo of a {class}" for every class of the dataset (Radford et al. 2021); the score is the
softmax probability of the instance's own class. A model that is not the generator judges it.

Weights come from a local ``.safetensors`` file only; the architecture is an open_clip name
(e.g. "ViT-B-32") or the path of an open_clip model-config JSON file, registered on first use.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from augment.image.dataset import mask_xyxy
from augment.image.layouts import Layout

TEMPLATE = "a photo of a {}"


@dataclass
class ClipModel:
    """A loaded open_clip model with its eval transform and tokenizer."""

    model: torch.nn.Module
    preprocess: object
    tokenizer: object
    device: torch.device
    _text: dict = field(default_factory=dict, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @torch.no_grad()
    def text_features(self, categories: tuple[str, ...]) -> torch.Tensor:
        """(K, D) unit-norm text embeddings of "a photo of a {class}", cached per class list."""
        with self._lock:
            if categories not in self._text:
                tokens = self.tokenizer([TEMPLATE.format(c) for c in categories]).to(self.device)
                features = self.model.encode_text(tokens).float()
                self._text[categories] = features / features.norm(dim=-1, keepdim=True)
            return self._text[categories]


def load_clip(name: str, checkpoint: str | Path, device: str | torch.device = "cpu") -> ClipModel:
    """The open_clip model ``name`` (a registered name or a config ``.json`` path) with weights
    from the local ``checkpoint`` (.safetensors), loaded once per process."""
    return _load_clip(str(name), str(Path(checkpoint).expanduser()), str(device))


@lru_cache(maxsize=2)
def _load_clip(name: str, checkpoint: str, device: str) -> ClipModel:
    import open_clip

    if name.startswith(("hf-hub:", "local-dir:")):
        raise ValueError(f"verify.clip_model: {name!r} would load weights from elsewhere; give an "
                         "open_clip architecture name or a config .json file")
    if name.endswith(".json"):
        if not Path(name).is_file():
            raise FileNotFoundError(f"verify.clip_model: config file {name} does not exist")
        open_clip.add_model_config(name)
        name = Path(name).stem
    if name not in open_clip.list_models():
        raise ValueError(f"verify.clip_model: unknown open_clip architecture {name!r}")
    path = Path(checkpoint)
    if path.suffix != ".safetensors" or not path.is_file():
        raise FileNotFoundError(f"verify.clip_checkpoint: {path} is not an existing .safetensors "
                                "file (download the open_clip weights where you have network)")
    try:
        model, _, preprocess = open_clip.create_model_and_transforms(
            name, pretrained=str(path), device=device)
    except (RuntimeError, OSError, ValueError) as exc:
        raise ValueError(f"verify.clip_checkpoint: {path} does not hold weights of {name}: "
                         f"{exc}") from exc
    return ClipModel(model.eval(), preprocess, open_clip.get_tokenizer(name), torch.device(device))


def instance_crop(image: np.ndarray, mask: np.ndarray, margin: float) -> Image.Image:
    """The box of a non-empty bool (H, W) ``mask`` grown by ``margin`` of its size on each side,
    cropped from uint8 (H, W, 3) ``image``."""
    x1, y1, x2, y2 = mask_xyxy(mask)
    dx, dy = margin * (x2 - x1), margin * (y2 - y1)
    height, width = mask.shape
    box = (max(0, int(x1 - dx)), max(0, int(y1 - dy)), min(width, int(np.ceil(x2 + dx))),
           min(height, int(np.ceil(y2 + dy))))
    return Image.fromarray(image).crop(box)


@torch.no_grad()
def crop_scores(clip: ClipModel, images: np.ndarray, layouts: list[Layout],
                categories: list[str], margin: float = 0.1) -> list[list[dict]]:
    """Per image, per instance (drawing order): ``verify_clip``, the probability of the instance's
    class among ``categories``, and ``clip_pred``, the most probable class. ``images`` are uint8
    (B, H, W, 3). An instance with no visible pixel scores 0.0 (its label cannot be right)."""
    text = clip.text_features(tuple(categories))  # (K, D)
    crops, where = [], []
    for b, (image, layout) in enumerate(zip(images, layouts)):
        for k in range(len(layout.instances)):
            mask = layout.instance_map == k + 1
            if mask.any():
                crops.append(clip.preprocess(instance_crop(image, mask, margin)))
                where.append((b, k))
    probs = np.zeros((0, len(categories)))
    if crops:
        features = clip.model.encode_image(torch.stack(crops).to(clip.device)).float()
        features = features / features.norm(dim=-1, keepdim=True)
        logits = clip.model.logit_scale.exp().float() * features @ text.T  # (N, K)
        probs = logits.softmax(dim=-1).cpu().numpy()
    scores = [[{"verify_clip": 0.0, "clip_pred": None} for _ in layout.instances]
              for layout in layouts]
    for (b, k), p in zip(where, probs):
        true = categories.index(layouts[b].instances[k].category)
        scores[b][k] = {"verify_clip": float(p[true]), "clip_pred": categories[int(p.argmax())]}
    return scores
