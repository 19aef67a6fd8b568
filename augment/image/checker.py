"""The shapes checker: a small segmenter trained on real procedural scenes, never on generated ones.

It labels every pixel twice, with a shape class and with a palette colour, so that a generated image
can be checked against the layout it was conditioned on without trusting the generator: per-instance
verification scores for the manifest (``score_instances``), condition fidelity (mIoU against the
condition's semantic mask, colour accuracy) and layout-fidelity metrics all read its predictions.

The network is a three-level U-Net (Ronneberger et al. 2015) with GroupNorm and SiLU; the weights
that ship in ``augment/assets/shapes-checker`` are trained by ``augment.image.training.checker``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from augment.core.modelio import CONFIG_NAME, WEIGHTS_NAME, load_module, save_module
from augment.image.layout_types import Layout
from augment.image.world import CLASSES, COLOURS

EMBEDDED_CHECKER = Path(__file__).resolve().parents[1] / "assets" / "shapes-checker"


def _conv_block(c_in: int, c_out: int, stride: int = 1) -> nn.Sequential:
    """conv3x3 -> GroupNorm -> SiLU; GroupNorm keeps a prediction independent of its batch."""
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False),
                         nn.GroupNorm(max(1, c_out // 8), c_out), nn.SiLU())


class ShapesChecker(nn.Module):
    """Fully-convolutional segmenter with a class head and a colour head.

    ``widths[0]`` is the full-resolution width; each further width is one stride-2 level down, so
    image sides must be divisible by ``2 ** (len(widths) - 1)`` (8 for the default four widths).
    Input (B, 3, H, W) float in [0, 1]; output ``(class_logits (B, len(CLASSES) + 1, H, W),
    colour_logits (B, len(COLOURS) + 1, H, W))``, channel 0 = background in both.
    """

    def __init__(self, widths: tuple[int, ...] = (16, 32, 48, 64),
                 num_classes: int = len(CLASSES) + 1, num_colours: int = len(COLOURS) + 1):
        super().__init__()
        if len(widths) < 2:
            raise ValueError(f"widths needs at least two levels, got {widths}")
        self.config = {"widths": list(widths), "num_classes": num_classes,
                       "num_colours": num_colours}
        self.stem = nn.Sequential(_conv_block(3, widths[0]), _conv_block(widths[0], widths[0]))
        self.down = nn.ModuleList(
            nn.Sequential(_conv_block(a, b, stride=2), _conv_block(b, b))
            for a, b in zip(widths[:-1], widths[1:]))
        # each decoder level sees the upsampled deeper features concatenated with its skip
        self.up = nn.ModuleList(_conv_block(deep + skip, skip)
                                for deep, skip in zip(widths[:0:-1], widths[-2::-1]))
        self.class_head = nn.Conv2d(widths[0], num_classes, 1)
        self.colour_head = nn.Conv2d(widths[0], num_colours, 1)

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        factor = 2 ** len(self.down)
        if images.shape[-1] % factor or images.shape[-2] % factor:
            raise ValueError(f"image sides must be divisible by {factor}, got {tuple(images.shape[-2:])}")
        x = self.stem(images * 2.0 - 1.0)  # (B, w0, H, W)
        skips = []
        for level in self.down:
            skips.append(x)
            x = level(x)  # halves H and W
        for level, skip in zip(self.up, reversed(skips)):
            x = F.interpolate(x, scale_factor=2.0, mode="nearest")
            x = level(torch.cat([x, skip], dim=1))
        return self.class_head(x), self.colour_head(x)


def save_checker(model: ShapesChecker, out_dir: str | Path) -> Path:
    """Write ``out_dir/model.safetensors`` (fp16) and ``out_dir/config.json`` atomically."""
    return save_module(model, model.config, out_dir)


def load_checker(path: str | Path | None = None, device: str | torch.device = "cpu") -> ShapesChecker:
    """Load a checker folder (``config.json`` + ``model.safetensors``); None = the embedded one.

    Weights are read with safetensors only and cast to float32; the model is returned in eval mode.
    Raises ``FileNotFoundError`` or ``ValueError`` naming the missing or unusable file.
    """
    folder = Path(path) if path is not None else EMBEDDED_CHECKER
    return load_module(ShapesChecker, folder / CONFIG_NAME, folder / WEIGHTS_NAME, "shapes checker",
                       device)


def label_map(logits: torch.Tensor) -> torch.Tensor:
    """Per-pixel argmax of (B, C, H, W) logits -> long (B, H, W): the same first-maximum indices as
    ``logits.argmax(1)``, taken over a contiguous last dim (about 10x faster on a CPU)."""
    return logits.permute(0, 2, 3, 1).contiguous().argmax(-1)


@torch.no_grad()
def predict(model: ShapesChecker, images: np.ndarray | torch.Tensor,
            batch_size: int = 256) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-pixel class and colour of each image.

    ``images``: uint8 numpy (B, H, W, 3), or a float tensor (B, 3, H, W) in [0, 1]. Returns
    ``(semantic, colour)``, long CPU tensors (B, H, W): class id (0 = background, k = CLASSES[k-1])
    and colour id (0 = none, k = COLOURS[k-1]).
    """
    if isinstance(images, np.ndarray):
        if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] != 3:
            raise ValueError(f"numpy images must be uint8 (B, H, W, 3), got {images.dtype} {images.shape}")
        images = torch.from_numpy(images).permute(0, 3, 1, 2)
    elif images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"tensor images must be (B, 3, H, W), got {tuple(images.shape)}")
    device = next(model.parameters()).device
    semantic, colour = [], []
    for batch in images.split(batch_size):
        batch = batch.to(device)
        batch = batch.float() / 255.0 if batch.dtype == torch.uint8 else batch.float()
        class_logits, colour_logits = model(batch)
        semantic.append(label_map(class_logits).cpu())
        colour.append(label_map(colour_logits).cpu())
    return torch.cat(semantic), torch.cat(colour)


def score_instances(semantic_pred: np.ndarray | torch.Tensor, colour_pred: np.ndarray | torch.Tensor,
                    layout: Layout) -> list[dict]:
    """Check each instance of one image against the checker's prediction, in drawing order.

    ``semantic_pred`` and ``colour_pred`` are (H, W) integer maps from ``predict``. For instance i
    with visible mask m (``layout.instance_map == i + 1``):

    - ``verify_iou``: IoU of m with p, the pixels predicted as the instance's class minus the
      visible pixels of the *other* instances of that class. Predicted pixels of the class outside
      every labeled instance stay in p, so a stray object of the same class lowers the score: an
      unlabeled object makes the image's labels wrong even when the labeled one is drawn well.
      An instance with no visible pixels scores 0 (its label cannot be right).
    - ``colour_pred``: the colour name most often predicted over m, ignoring pixels predicted as
      no colour (whether the object is there at all is ``verify_iou``'s question); None if no
      pixel of m has a colour.
    - ``colour_ok``: ``colour_pred == colour`` when the layout specified the colour, else None.
    - ``area``: number of visible pixels, int.
    """
    semantic_pred, colour_pred = np.asarray(semantic_pred), np.asarray(colour_pred)
    shape = (layout.height, layout.width)
    if semantic_pred.shape != shape or colour_pred.shape != shape:
        raise ValueError(f"predictions {semantic_pred.shape}, {colour_pred.shape} do not match "
                         f"the layout's (H, W) = {shape}")
    instance_map = layout.instance_map
    scores = []
    for i, inst in enumerate(layout.instances):
        m = instance_map == i + 1
        same_class_others = np.isin(instance_map, [j + 1 for j, other in enumerate(layout.instances)
                                                   if j != i and other.category == inst.category])
        p = (semantic_pred == inst.category_id) & ~same_class_others
        union = int((m | p).sum())
        votes = np.bincount(colour_pred[m].ravel(), minlength=len(COLOURS) + 1)[1:]
        colour = COLOURS[int(votes.argmax())] if votes.any() else None
        scores.append({
            "verify_iou": int((m & p).sum()) / union if m.any() else 0.0,
            "colour_pred": colour,
            "colour_ok": None if inst.colour is None else colour == inst.colour,
            "area": int(m.sum()),
        })
    return scores


def confusion_matrix(pred: np.ndarray | torch.Tensor, target: np.ndarray | torch.Tensor,
                     num_classes: int) -> np.ndarray:
    """(K, K) int64 counts over all pixels of a batch: row = target class, column = predicted.

    ``pred`` and ``target`` are integer maps of the same shape, values in ``0 .. K-1``.
    """
    pred = np.asarray(pred).astype(np.int64).ravel()
    target = np.asarray(target).astype(np.int64).ravel()
    if pred.shape != target.shape:
        raise ValueError(f"pred has {pred.size} pixels but target has {target.size}")
    if pred.size and (min(pred.min(), target.min()) < 0
                      or max(pred.max(), target.max()) >= num_classes):
        raise ValueError(f"class ids must lie in 0..{num_classes - 1}")
    counts = np.bincount(target * num_classes + pred, minlength=num_classes * num_classes)
    return counts.reshape(num_classes, num_classes)


def miou_from_confusion(conf: np.ndarray, ignore_absent: bool = True) -> tuple[float, np.ndarray]:
    """Mean intersection-over-union from a ``confusion_matrix``.

    IoU_k = TP_k / (TP_k + FP_k + FN_k). A class absent from both target and prediction has IoU nan
    in the returned (K,) array; ``ignore_absent`` leaves it out of the mean, otherwise it counts 0.
    """
    conf = np.asarray(conf, dtype=np.float64)
    tp = np.diag(conf)
    union = conf.sum(0) + conf.sum(1) - tp
    with np.errstate(invalid="ignore", divide="ignore"):
        iou = np.where(union > 0, tp / union, np.nan)
    if ignore_absent:
        return (float(np.nanmean(iou)) if np.isfinite(iou).any() else float("nan")), iou
    return float(np.nan_to_num(iou, nan=0.0).mean()), iou
