"""The shapes-world feature extractor: a small CNN classifier whose penultimate layer replaces
Inception-v3 for FID/KID/precision-recall and whose 30-way logits replace Inception's for IS.

Inception features describe ImageNet photographs, not flat shapes on textured backgrounds, so
distances between shapes-world image sets measured with them say little about shapes or colours.
This network is trained on real procedural scenes (``evaluation.image.training.shapes_features``) with
one categorical label per image, so that Inception Score has its intended meaning: the class of an
image is the (shape, colour) of its largest visible instance, 5 x 6 = 30 classes (``CLASS_NAMES``).
Auxiliary heads (background texture, number of visible objects, and a coarse 8x8 map of which
(shape, colour) covers each cell) are trained jointly so that the features describe the whole
scene, not only its largest object; a separate branch over the background pixels gives the
background texture its own features (a background swap moves FID as a shape change does).

Its front end is a frozen copy of the shapes checker (``augment.image.checker``, a segmenter
trained on real scenes only): telling a star from a cross at 64x64 takes a full-resolution network
and far more CPU time than a classifier gets here (a 182k-parameter stand-alone CNN reached 0.63
held-out accuracy after 128k training images), and the checker already does it per pixel. The
trained part reads the image together with the checker's per-pixel class and colour
probabilities. The copy ships inside this model's own weights file, so the two can be updated
independently; both are trained on real scenes, never on generated ones.

Metrics computed on these features (torch-fidelity under the name ``"shapes-features"``):
FID (Heusel et al. 2017), KID (Binkowski et al. 2018), IS (Salimans et al. 2016) and improved
precision/recall (Kynkaanniemi et al. 2019).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch_fidelity.feature_extractor_base import FeatureExtractorBase
from torch_fidelity.registry import FEATURE_EXTRACTORS_REGISTRY, register_feature_extractor

from augment.core.io import sha256_file
from augment.core.modelio import CONFIG_NAME, WEIGHTS_NAME, load_module, save_module
from augment.image.checker import ShapesChecker
from augment.image.world import CLASSES, COLOURS

EMBEDDED_SHAPES_FEATURES = Path(__file__).resolve().parents[1] / "assets" / "shapes-features"
EXTRACTOR_NAME = "shapes-features"
INPUT_SIZE = 64
_COVERAGE_EPS = 1e-4  # floor of an image share (0.01%): log(coverage) of an absent class stays finite

CLASS_NAMES: tuple[str, ...] = tuple(f"{colour} {shape}" for shape in CLASSES for colour in COLOURS)
"""Image classes, index = shape index * len(COLOURS) + colour index ("red circle" is 0)."""


def class_index(shape: str, colour: str) -> int:
    """Index into ``CLASS_NAMES`` of a (shape, colour) pair."""
    return CLASSES.index(shape) * len(COLOURS) + COLOURS.index(colour)


def _conv_block(c_in: int, c_out: int, stride: int = 1) -> nn.Sequential:
    """conv3x3 -> BatchNorm -> SiLU. BatchNorm (frozen in eval mode) rather than GroupNorm: per-
    image normalisation over space would erase how much of the image a feature covers, which is
    what "largest instance" depends on; frozen statistics keep a prediction batch-independent."""
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False),
                         nn.BatchNorm2d(c_out, eps=1e-3), nn.SiLU())


class BackgroundBranch(nn.Module):
    """Background texture features from the pixels the checker calls background.

    The scene trunk's features serve the class, count and coverage heads, which outweigh the
    background head in a shared layer (trained that way it stays at chance). This branch has its
    own inputs, statistics over the background pixels (weighted by the checker's background
    probability): mean colour; log magnitude of the colour's linear slope across the image (a
    gradient); log residual spread around that plane (a texture); mean absolute over root-mean-
    square residual (about 1 for two-level stripes, 0.8 for Gaussian-like noise, whatever the
    contrast); log mean difference of neighbouring pixels (sharp stripes vs smooth noise); and the
    mean of a few learned local filters. One layer mixes them into ``dim`` features appended to
    the scene features. Magnitudes, not signed slopes, so a flipped image gets the same features.
    """

    STATS = 15

    def __init__(self, dim: int, filters: int = 12):
        super().__init__()
        self.filters = nn.Sequential(_conv_block(3, filters), _conv_block(filters, filters))
        self.norm = nn.BatchNorm1d(self.STATS + filters, eps=1e-3)
        self.mix = nn.Linear(self.STATS + filters, dim)

    def forward(self, images: torch.Tensor, p_background: torch.Tensor) -> torch.Tensor:
        b, _, h, w = images.shape
        weight = p_background + 1e-3  # (B, 1, H, W); never all zero

        def wmean(x, wt=weight):  # weighted mean over the pixels, (B, C, H, W) -> (B, C)
            return (x * wt).sum(dim=(2, 3)) / wt.sum(dim=(2, 3))

        ys = torch.linspace(-1, 1, h, device=images.device).view(1, 1, h, 1).expand(b, 1, h, w)
        xs = torch.linspace(-1, 1, w, device=images.device).view(1, 1, 1, w).expand(b, 1, h, w)
        mean = wmean(images)
        colour = images - mean[:, :, None, None]
        fit, slope_sq = torch.zeros_like(images), torch.zeros_like(mean)
        for coord in (xs, ys):
            centred = coord - wmean(coord)[:, :, None, None]
            slope = wmean(centred * colour) / wmean(centred * centred)  # (B, 3)
            fit = fit + slope[:, :, None, None] * centred
            slope_sq = slope_sq + slope ** 2
        residual = colour - fit
        spread = wmean(residual ** 2)
        two_level = wmean(residual.abs()) / (spread + 1e-6).sqrt()
        steps = []
        for diff, wt in ((images.diff(dim=-1), weight[..., 1:] * weight[..., :-1]),
                         (images.diff(dim=-2), weight[..., 1:, :] * weight[..., :-1, :])):
            steps.append(wmean(diff.abs(), wt))
        stats = torch.cat([mean, 0.5 * torch.log(slope_sq + 1e-6), 0.5 * torch.log(spread + 1e-6),
                           two_level,
                           torch.log((steps[0] + steps[1]) / 2 + 1e-4),
                           wmean(self.filters(images * 2.0 - 1.0))], dim=1)
        return F.silu(self.mix(self.norm(stats)))


class ShapesFeatureNet(nn.Module):
    """Frozen shapes checker, then a CNN with three stride-2 levels (``widths``) to an 8x8 grid and
    one hidden layer.

    The checker's per-pixel class and colour probabilities give each (shape, colour) pair's share
    of the image, ``coverage`` (B, 30): its argmax alone is the largest instance's class in ~94% of
    real scenes (it misses where two instances share a class, or areas nearly tie). So the class
    logits are ``temperature * log(coverage)`` (a 5% area difference is about one logit at the
    initial temperature) plus a linear head on the features, initialised to zero, that learns the
    corrections. The heads read the scene features and the background branch's together. The CNN sees RGB and the checker's probabilities (3 + 6 + 7 channels); the hidden
    layer reads its mean-pooled grid and ``log(coverage)``.

    Input (B, 3, 64, 64) float in [0, 1]. ``forward`` returns a dict of float tensors:
    ``features`` (B, feature_dim + background_dim), the penultimate layer (after SiLU) and, when
    ``background_dim`` > 0, the ``BackgroundBranch`` features; ``logits_unbiased``
    (B, len(CLASS_NAMES)), no constant bias, so IS reads the classifier's own p(y|x);
    ``background_logits`` (B, num_backgrounds); ``count_logits`` (B, max_objects), index k = k + 1
    visible objects; ``cell_logits`` (B, len(CLASS_NAMES) + 1, 8, 8), channel 0 = background, an
    auxiliary head that makes the grid say where each class is.
    """

    def __init__(self, widths: tuple[int, ...] = (24, 48, 96), feature_dim: int = 128,
                 num_backgrounds: int = 4, max_objects: int = 4, checker: dict | None = None,
                 background_dim: int = 0):
        super().__init__()
        if len(widths) != 3:
            raise ValueError(f"widths needs exactly three levels (64 -> 8 pixels), got {widths}")
        self.checker = ShapesChecker(**(checker or {})).requires_grad_(False)
        self.config = {"widths": list(widths), "feature_dim": feature_dim,
                       "num_backgrounds": num_backgrounds, "max_objects": max_objects,
                       "checker": self.checker.config, "background_dim": background_dim}
        num_classes = (self.checker.config["num_classes"] - 1) * (self.checker.config["num_colours"] - 1)
        levels, c_in = [], 3 + self.checker.config["num_classes"] + self.checker.config["num_colours"]
        for width in widths:
            levels += [_conv_block(c_in, width, stride=2), _conv_block(width, width)]
            c_in = width
        self.body = nn.Sequential(*levels)
        self.hidden = nn.Linear(widths[-1] + num_classes, feature_dim)
        self.log_temperature = nn.Parameter(torch.tensor(math.log(20.0)))
        self.background = BackgroundBranch(background_dim) if background_dim else None
        out_dim = feature_dim + background_dim
        self.class_head = nn.Linear(out_dim, num_classes, bias=False)
        nn.init.zeros_(self.class_head.weight)  # start from the coverage argmax, learn corrections
        self.background_head = nn.Linear(out_dim, num_backgrounds)
        self.count_head = nn.Linear(out_dim, max_objects)
        self.cell_head = nn.Conv2d(widths[-1], num_classes + 1, 1)

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        class_logits, colour_logits = self.checker(images)  # (B, 6, 64, 64), (B, 7, 64, 64)
        p_class, p_colour = class_logits.softmax(dim=1), colour_logits.softmax(dim=1)
        joint = p_class[:, 1:, None] * p_colour[:, None, 1:]  # (B, 5, 6, 64, 64): P(shape, colour)
        log_coverage = torch.log(joint.flatten(1, 2).mean(dim=(2, 3)) + _COVERAGE_EPS)  # (B, 30)
        grid = self.body(torch.cat([images, p_class, p_colour], dim=1) * 2.0 - 1.0)  # (B, C, 8, 8)
        features = F.silu(self.hidden(torch.cat([grid.mean(dim=(2, 3)), log_coverage], dim=1)))
        if self.background is not None:
            features = torch.cat([features, self.background(images, p_class[:, :1])], dim=1)
        return {"features": features,
                "logits_unbiased": self.log_temperature.exp() * log_coverage + self.class_head(features),
                "background_logits": self.background_head(features),
                "count_logits": self.count_head(features), "cell_logits": self.cell_head(grid),
                "checker_class_logits": class_logits, "checker_colour_logits": colour_logits}


def preprocess(images: torch.Tensor) -> torch.Tensor:
    """uint8 (B, 3, H, W) -> float32 (B, 3, 64, 64) in [0, 1]; other sizes are resized bilinearly
    with antialiasing (so a 512x512 generated image is averaged down, not aliased)."""
    if images.dtype != torch.uint8 or images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"images must be uint8 (B, 3, H, W), got {images.dtype} {tuple(images.shape)}")
    x = images.float() / 255.0
    if x.shape[-2:] != (INPUT_SIZE, INPUT_SIZE):
        x = F.interpolate(x, size=(INPUT_SIZE, INPUT_SIZE), mode="bilinear", align_corners=False,
                          antialias=True).clamp(0.0, 1.0)
    return x


def save_shapes_features(model: ShapesFeatureNet, out_dir: str | Path) -> Path:
    """Write ``out_dir/model.safetensors`` (floating tensors in fp16) and ``config.json`` atomically."""
    return save_module(model, model.config, out_dir)


def _resolve(path: str | Path | None) -> tuple[Path, Path]:
    """(config file, weights file) for a model folder, a ``.safetensors`` file, or None (embedded)."""
    path = Path(path) if path is not None else EMBEDDED_SHAPES_FEATURES
    if path.suffix == ".safetensors":
        return path.parent / CONFIG_NAME, path
    return path / CONFIG_NAME, path / WEIGHTS_NAME


def weights_sha256(path: str | Path | None = None) -> str:
    """Hex SHA-256 of the weights file (for feature-cache keys); ``path`` as in ``load_shapes_features``."""
    _, weights_file = _resolve(path)
    if not weights_file.is_file():
        raise FileNotFoundError(f"{weights_file}: shapes-features weights file not found")
    return sha256_file(weights_file)


def load_shapes_features(path: str | Path | None = None,
                         device: str | torch.device = "cpu") -> ShapesFeatureNet:
    """Load a model folder (``config.json`` + ``model.safetensors``), or a ``.safetensors`` file with
    ``config.json`` beside it; None = the embedded weights. safetensors only, cast to float32, eval
    mode. Raises ``FileNotFoundError`` / ``ValueError`` naming the missing or unusable file."""
    config_file, weights_file = _resolve(path)
    return load_module(ShapesFeatureNet, config_file, weights_file, "shapes-features", device)


@torch.no_grad()
def extract(model: ShapesFeatureNet, images: torch.Tensor | np.ndarray, batch_size: int = 64,
            outputs: tuple[str, ...] | None = None) -> dict[str, torch.Tensor]:
    """Features of uint8 images (B, 3, H, W), computed exactly as the torch-fidelity extractor does.

    Returns CPU float32 ``{"features": (B, feature_dim), "logits_unbiased": (B, 30)}``, or the
    ``outputs`` named (any keys of ``ShapesFeatureNet.forward``).
    """
    images = torch.as_tensor(images)
    device = next(model.parameters()).device
    out: dict[str, list[torch.Tensor]] = {name: [] for name in
                                          (outputs or ShapesFeatureExtractor.PROVIDED)}
    for batch in images.split(batch_size):
        result = model(preprocess(batch.to(device)))
        for name in out:
            out[name].append(result[name].float().cpu())
    return {name: torch.cat(parts) for name, parts in out.items()}


class ShapesFeatureExtractor(FeatureExtractorBase):
    """torch-fidelity adaptor: ``calculate_metrics(feature_extractor="shapes-features", ...)``.

    ``feature_extractor_weights_path`` is a model folder or its ``model.safetensors`` (None = the
    embedded weights). Input: uint8 (B, 3, H, W) batches; output: the requested features, float32.
    """

    PROVIDED = ("features", "logits_unbiased")

    def __init__(self, name: str, features_list: list[str], feature_extractor_weights_path=None,
                 feature_extractor_internal_dtype=None, **kwargs):
        super().__init__(name, features_list)
        if feature_extractor_internal_dtype not in (None, "float32"):
            raise ValueError(f"feature_extractor_internal_dtype={feature_extractor_internal_dtype!r}: "
                             f"{EXTRACTOR_NAME} runs in float32 only")
        self.net = load_shapes_features(feature_extractor_weights_path)

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, ...]:
        outputs = self.net(preprocess(images))
        return tuple(outputs[name].float() for name in self.features_list)

    @staticmethod
    def get_provided_features_list() -> tuple[str, ...]:
        return ShapesFeatureExtractor.PROVIDED

    @staticmethod
    def get_default_feature_layer_for_metric(metric: str) -> str:
        return {"isc": "logits_unbiased", "fid": "features", "kid": "features", "prc": "features"}[metric]

    @staticmethod
    def can_be_compiled() -> bool:
        return False  # a few milliseconds per batch on CPU: compiling would cost more than it saves

    @staticmethod
    def get_dummy_input_for_compile() -> torch.Tensor:
        return torch.zeros(1, 3, INPUT_SIZE, INPUT_SIZE, dtype=torch.uint8)


def register() -> None:
    """Register ``ShapesFeatureExtractor`` with torch-fidelity as "shapes-features"; safe to repeat."""
    registered = FEATURE_EXTRACTORS_REGISTRY.get(EXTRACTOR_NAME)
    if registered is None:
        register_feature_extractor(EXTRACTOR_NAME, ShapesFeatureExtractor)
    elif registered is not ShapesFeatureExtractor:
        raise ValueError(f"torch-fidelity already has a different {EXTRACTOR_NAME!r} extractor: {registered}")
