"""Nearest neighbours by cosine distance on L2-normalised features, for memorization (synthetic vs
training) and near duplicates (within a set)."""

from __future__ import annotations

import numpy as np


def l2_normalise(features: np.ndarray) -> np.ndarray:
    """Rows of ``features`` (N, D) scaled to unit length, float64.

    Raises ``ValueError`` naming the first zero or non-finite row: its direction is undefined, and
    a silent NaN would poison every similarity it touches.
    """
    x = np.asarray(features, dtype=np.float64)
    if x.ndim != 2:
        raise ValueError(f"features must be (N, D), got shape {x.shape}")
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    bad = np.flatnonzero(~np.isfinite(norms[:, 0]) | (norms[:, 0] == 0))
    if bad.size:
        raise ValueError(f"feature row {bad[0]} is zero or not finite ({bad.size} such rows)")
    return x / norms


def nearest_neighbours(query: np.ndarray, bank: np.ndarray, batch_size: int = 1024,
                       exclude_self: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Nearest ``bank`` row of each ``query`` row by cosine distance ``1 - cos``.

    ``query`` (N, D) and ``bank`` (M, D) float features, normalised here. ``exclude_self=True``
    treats ``query`` as ``bank`` itself (N == M) and skips row i's match with itself, for
    within-set neighbours. Query rows go ``batch_size`` at a time, so memory is
    ``batch_size * M`` floats (80 MB for 10k bank rows). Returns ``distances`` (N,) float64 in
    [0, 2] and ``indices`` (N,) int64 into ``bank``.
    """
    q, b = l2_normalise(query), l2_normalise(bank)
    if q.shape[1] != b.shape[1]:
        raise ValueError(f"query has {q.shape[1]} feature dims, bank has {b.shape[1]}")
    if exclude_self and len(q) != len(b):
        raise ValueError(f"exclude_self needs query and bank to be one set, got {len(q)} and "
                         f"{len(b)} rows")
    if len(b) < 1 + exclude_self:
        raise ValueError(f"bank has {len(b)} rows: too few to have a nearest neighbour")
    distances = np.empty(len(q), dtype=np.float64)
    indices = np.empty(len(q), dtype=np.int64)
    for start in range(0, len(q), batch_size):
        sim = q[start:start + batch_size] @ b.T  # (batch, M)
        if exclude_self:
            rows = np.arange(len(sim))
            sim[rows, start + rows] = -np.inf
        best = sim.argmax(axis=1)
        indices[start:start + len(sim)] = best
        distances[start:start + len(sim)] = np.clip(1.0 - sim[np.arange(len(sim)), best], 0.0, 2.0)
    return distances, indices
