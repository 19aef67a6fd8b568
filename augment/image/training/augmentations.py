"""Label-preserving augmentations of rendered scenes, for the trainers of the embedded models, and
the degradations their held-out evaluations apply.

They stand in for the ways a generated image differs from a rendered one: Gaussian blur, additive
noise, brightness/contrast shifts; the 8 symmetries of the square move images and label maps
together. Every random number comes from the caller's ``torch.Generator``, on that generator's
device, in a fixed order, so a seed fixes every batch.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

HELD_OUT_SETTINGS = {"held_out": {"blur_sigma": 0.0, "noise_std": 0.0},
                     "held_out_degraded": {"blur_sigma": 1.0, "noise_std": 0.03}}
"""Held-out evaluations of the checker and the shapes-features extractor: clean and degraded."""


def gaussian_blur(images: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """Blur each image with its own sigma (separable 5-tap kernel, reflect padding).

    images (B, C, H, W) float; sigma (B,) float >= 0 (0 leaves the image unchanged).
    """
    b, c, h, w = images.shape
    taps = torch.arange(-2, 3, dtype=images.dtype, device=images.device)
    kernel = torch.exp(-taps**2 / (2 * sigma.clamp_min(1e-3)[:, None] ** 2))  # (B, 5)
    kernel = (kernel / kernel.sum(1, keepdim=True)).repeat_interleave(c, dim=0)  # (B*C, 5)
    x = images.reshape(1, b * c, h, w)
    x = F.conv2d(F.pad(x, (2, 2, 0, 0), mode="reflect"), kernel[:, None, None, :], groups=b * c)
    x = F.conv2d(F.pad(x, (0, 0, 2, 2), mode="reflect"), kernel[:, None, :, None], groups=b * c)
    return x.reshape(b, c, h, w)


def _uniform(low: float, high: float, shape: tuple[int, ...], gen: torch.Generator,
             device: torch.device) -> torch.Tensor:
    """Uniform in [low, high), drawn on ``gen``'s device and moved to ``device``."""
    return low + (high - low) * torch.rand(shape, generator=gen, device=gen.device).to(device)


def symmetry_flags(batch: int, gen: torch.Generator, device: torch.device) -> torch.Tensor:
    """One random symmetry of the square per sample: (3, B) bool (flip x, flip y, transpose)."""
    return torch.rand((3, batch), generator=gen, device=gen.device).to(device) < 0.5


def dihedral(x: torch.Tensor, flags: torch.Tensor) -> torch.Tensor:
    """Apply per-sample flips and a transpose (``flags`` (3, B) bool) to x (B, ..., H, W)."""
    shape = (-1,) + (1,) * (x.ndim - 1)
    x = torch.where(flags[0].view(shape), x.flip(-1), x)
    x = torch.where(flags[1].view(shape), x.flip(-2), x)
    return torch.where(flags[2].view(shape), x.transpose(-1, -2), x)


@dataclass(frozen=True)
class Photometric:
    """Random per-image blur (sigma uniform in [0, max_blur_sigma]), contrast (x 1 +- contrast about
    the image mean), brightness (+- brightness) and Gaussian noise (std uniform in
    [0, max_noise_std]), on the [0, 1] scale."""

    max_blur_sigma: float
    max_noise_std: float
    brightness: float
    contrast: float

    def __call__(self, x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        """x (B, 3, H, W) float in [0, 1] -> the same, shifted and clamped to [0, 1]."""
        b, device = x.shape[0], x.device
        x = gaussian_blur(x, _uniform(0.0, self.max_blur_sigma, (b,), gen, device))
        mean = x.mean(dim=(1, 2, 3), keepdim=True)
        contrast = _uniform(1 - self.contrast, 1 + self.contrast, (b, 1, 1, 1), gen, device)
        brightness = _uniform(-self.brightness, self.brightness, (b, 1, 1, 1), gen, device)
        x = (x - mean) * contrast + mean + brightness
        noise_std = _uniform(0.0, self.max_noise_std, (b, 1, 1, 1), gen, device)
        noise = torch.randn(x.shape, generator=gen, device=gen.device).to(device)
        return (x + noise_std * noise).clamp(0.0, 1.0)


REAL_SCENE_SHIFTS = Photometric(max_blur_sigma=1.0, max_noise_std=0.04, brightness=0.05, contrast=0.15)
"""The shifts the checker and the shapes-features extractor train with (noise 0.04: ~10 grey levels)."""


def augment(x: torch.Tensor, shifts: Photometric, gen: torch.Generator,
            *maps: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """One random symmetry of the square per sample for images x (B, 3, H, W) float in [0, 1] and
    each label map (B, ..., H', W'), then ``shifts`` on the images. A map's side must divide the
    image's by a whole number for a flip of the image to be a flip of the map."""
    flags = symmetry_flags(x.shape[0], gen, x.device)
    return shifts(dihedral(x, flags), gen), [dihedral(m, flags) for m in maps]


def degrade(images: np.ndarray, blur_sigma: float, noise_std: float, seed: int) -> torch.Tensor:
    """Rendered images (N, 3, H, W) uint8 -> float (N, 3, H, W) in [0, 1], blurred with
    ``blur_sigma`` and with Gaussian noise of std ``noise_std`` (drawn from ``seed``), as a
    generator might degrade them; 0 turns either off."""
    x = torch.from_numpy(images).float() / 255.0
    if blur_sigma > 0:
        x = gaussian_blur(x, torch.full((len(x),), blur_sigma))
    if noise_std > 0:
        noise = torch.randn(x.shape, generator=torch.Generator().manual_seed(seed))
        x = (x + noise_std * noise).clamp(0.0, 1.0)
    return x
