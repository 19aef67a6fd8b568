"""Per-sample randomness derived from ``(run seed, sample index)``: a sample's condition, noise and
split never depend on which shard, batch or worker made it, so any sample regenerates alone."""

from __future__ import annotations

import numpy as np


def sample_seeds(seed: int, index: int) -> tuple[int, int]:
    """Two independent 63-bit seeds (layout stream, noise stream) for sample ``index`` of a run."""
    layout_state, noise_state = np.random.SeedSequence([seed, index]).spawn(2)
    return (int(layout_state.generate_state(1, np.uint64)[0] >> np.uint64(1)),
            int(noise_state.generate_state(1, np.uint64)[0] >> np.uint64(1)))


def split_of(seed: int, sample_id: int, val_fraction: float) -> str:
    """Deterministic train/val assignment of one sample, independent of shard size."""
    u = np.random.default_rng(np.random.SeedSequence([seed, sample_id, 1])).random()
    return "val" if u < val_fraction else "train"


def child_seed(seed: int, k: int) -> int:
    """The ``k``-th (k >= 1) 63-bit seed derived from ``seed``: the noise of a sample's parts
    (an inpainting stage, an event clip), each reproducible alone."""
    state = np.random.SeedSequence([seed, k]).generate_state(1, np.uint64)[0]
    return int(state >> np.uint64(1))
