"""Memorization: how many synthetic samples are near-copies of training samples.

A synthetic sample counts as memorized when its nearest training neighbour, by cosine distance on
L2-normalised features, is closer than a threshold, the nearest-neighbour copy test of Carlini et
al. 2023 ("Extracting training data from diffusion models") and Somepalli et al. 2023 ("Diffusion
art or digital forgery?"). The threshold is not a magic number: ``calibrate_threshold`` takes it
from real-vs-real distances, since a held-out real image is never a copy of a training image, so
only ``quantile`` of held-out real images fall below it (the test's false-positive rate).
"""

from __future__ import annotations

import numpy as np

from evaluation.fidelity import Figure
from evaluation.stats import wilson_interval


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


def calibrate_threshold(real_a: np.ndarray, real_b: np.ndarray, quantile: float = 0.01) -> float:
    """The cosine distance below which only ``quantile`` of real-vs-real neighbour distances fall.

    ``real_a`` (N, D): real samples the generator never saw (held out); ``real_b`` (M, D): the
    training bank the synthetic set will be compared with. Nearest-neighbour distances shrink as
    the bank grows, so ``real_b`` should be that bank itself (or a real set of the same size and
    source); then a held-out real image is flagged with probability ``quantile``.
    """
    if not 0 < quantile < 1:
        raise ValueError(f"quantile must lie in (0, 1), got {quantile}")
    distances, _ = nearest_neighbours(real_a, real_b)
    return float(np.quantile(distances, quantile))


def memorization(synthetic: np.ndarray, train_bank: np.ndarray, threshold: float, top_k: int = 10,
                 confidence: float = 0.95) -> dict:
    """Share of synthetic samples whose nearest training neighbour is closer than ``threshold``.

    ``synthetic`` (N, D), ``train_bank`` (M, D) features; ``threshold`` a cosine distance, usually
    from ``calibrate_threshold``. Returns a dict: ``rate``, ``ci_low``/``ci_high`` (Wilson interval
    at ``confidence``), ``count``, ``n``, ``threshold``, ``confidence``; ``examples``: the ``top_k``
    closest pairs as ``(synthetic index, train index, distance)``, closest first, flagged or not
    (the report shows what "closest" looks like even when nothing is flagged); and ``distances`` /
    ``indices`` (N,) of every sample's nearest training neighbour, for a histogram.
    """
    distances, indices = nearest_neighbours(synthetic, train_bank)
    count = int((distances < threshold).sum())
    n = len(distances)
    lo, hi = wilson_interval(count, n, confidence)
    order = np.argsort(distances, kind="stable")[:top_k]
    return {"rate": count / n if n else float("nan"), "ci_low": lo, "ci_high": hi, "count": count,
            "n": n, "threshold": float(threshold), "confidence": confidence,
            "examples": [(int(i), int(indices[i]), float(distances[i])) for i in order],
            "distances": distances, "indices": indices}


def memorization_figure(result: dict, group: str = "all") -> Figure:
    """The ``memorization_rate`` row of metrics.csv from a ``memorization`` result."""
    closest = ", ".join(f"{s}->{t} ({d:.4f})" for s, t, d in result["examples"][:3])
    details = (f"nearest training neighbour at cosine distance < {result['threshold']:.4f}; "
               f"{result['count']} of {result['n']} flagged; Wilson interval; "
               f"closest synthetic->train: {closest}")
    return Figure("memorization_rate", result["rate"], result["ci_low"], result["ci_high"],
                  result["n"], group, details)
