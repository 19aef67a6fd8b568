"""Augmentations of rendered scenes (``augment.image.training.augmentations``)."""

from __future__ import annotations

import numpy as np
import torch

from augment.image.training.augmentations import Photometric, augment, degrade, dihedral, symmetry_flags

NO_SHIFT = Photometric(max_blur_sigma=0.0, max_noise_std=0.0, brightness=0.0, contrast=0.0)


def test_the_eight_symmetries_are_the_dihedral_group():
    x = torch.arange(16.0).view(1, 1, 4, 4).repeat(8, 1, 1, 1)
    flags = torch.tensor([[(k >> bit) & 1 for k in range(8)] for bit in range(3)], dtype=torch.bool)
    out = dihedral(x, flags)
    assert len({tuple(o.flatten().tolist()) for o in out}) == 8
    assert torch.equal(out[0], x[0]) and torch.equal(out[1], x[0].flip(-1))


def test_label_maps_move_with_their_images():
    images = torch.randint(0, 256, (6, 3, 16, 16)) / 255.0
    labels = (images[:, 0] * 255).round().long()  # (B, H, W): a label per pixel, read off the image
    cells = torch.nn.functional.avg_pool2d(images[:, :1], 8)  # (B, 1, 2, 2): a coarser grid
    x, (moved, moved_cells) = augment(images, NO_SHIFT, torch.Generator().manual_seed(0), labels, cells)
    assert torch.equal((x[:, 0] * 255).round().long(), moved)
    torch.testing.assert_close(torch.nn.functional.avg_pool2d(x[:, :1], 8), moved_cells)


def test_draws_follow_the_generator():
    images = torch.rand(4, 3, 8, 8)
    shifts = Photometric(max_blur_sigma=1.0, max_noise_std=0.04, brightness=0.05, contrast=0.15)
    a, b, c = (augment(images, shifts, torch.Generator().manual_seed(s))[0] for s in (0, 0, 1))
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert a.min() >= 0 and a.max() <= 1
    assert symmetry_flags(5, torch.Generator().manual_seed(0), torch.device("cpu")).shape == (3, 5)


def test_degrade_off_is_a_plain_conversion_and_noise_is_seeded():
    images = np.random.default_rng(0).integers(0, 256, (2, 3, 8, 8), dtype=np.uint8)
    assert torch.equal(degrade(images, 0.0, 0.0, seed=1), torch.from_numpy(images).float() / 255.0)
    assert torch.equal(degrade(images, 1.0, 0.03, seed=1), degrade(images, 1.0, 0.03, seed=1))
    assert not torch.equal(degrade(images, 1.0, 0.03, seed=1), degrade(images, 1.0, 0.03, seed=2))
