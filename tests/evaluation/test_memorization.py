"""Memorization: planted copies are found, independent draws are not, calibration holds its rate."""

from __future__ import annotations

import numpy as np
import pytest

from evaluation.memorization import calibrate_threshold, memorization, memorization_figure
from evaluation.neighbours import nearest_neighbours
from evaluation.stats import wilson_interval


def gaussian(n, d=32, seed=0):
    return np.random.default_rng(seed).normal(size=(n, d))


def test_nearest_neighbours_match_brute_force_and_batching():
    query, bank = gaussian(37, 8, seed=1), gaussian(53, 8, seed=2)
    q = query / np.linalg.norm(query, axis=1, keepdims=True)
    b = bank / np.linalg.norm(bank, axis=1, keepdims=True)
    distance = 1 - q @ b.T
    for batch_size in (1, 5, 1024):
        d, i = nearest_neighbours(query, bank, batch_size=batch_size)
        assert np.array_equal(i, distance.argmin(1))
        assert d == pytest.approx(distance.min(1))


def test_nearest_neighbours_can_exclude_self():
    x = gaussian(20, 8, seed=3)
    d, i = nearest_neighbours(x, x, batch_size=6, exclude_self=True)
    assert (i != np.arange(20)).all() and (d > 0).all()
    with pytest.raises(ValueError, match="one set"):
        nearest_neighbours(x, x[:5], exclude_self=True)


@pytest.fixture(scope="module")
def world():
    """A training bank, a held-out real set for calibration, and a third real set."""
    return gaussian(1500, seed=10), gaussian(2000, seed=11), gaussian(2000, seed=12)


def test_calibrated_threshold_has_the_chosen_false_positive_rate(world):
    bank, held_out, third = world
    for quantile in (0.01, 0.05):
        threshold = calibrate_threshold(held_out, bank, quantile)
        fpr = memorization(third, bank, threshold)["rate"]
        lo, hi = wilson_interval(round(quantile * len(third)), len(third), 0.99)
        assert lo < fpr < hi, (quantile, fpr)


def test_planted_copies_are_detected_and_ranked_first(world):
    bank, held_out, _ = world
    threshold = calibrate_threshold(held_out, bank, 0.01)
    rng = np.random.default_rng(13)
    synthetic = gaussian(200, seed=14)
    slots = rng.choice(200, 20, replace=False)  # 10% of the synthetic set
    sources = rng.choice(len(bank), 20, replace=False)
    synthetic[slots] = bank[sources]
    result = memorization(synthetic, bank, threshold, top_k=20)
    lo, hi = wilson_interval(20, 200)
    assert lo <= result["rate"] <= hi and result["count"] >= 20
    planted = dict(zip(slots.tolist(), sources.tolist()))
    assert {s: t for s, t, _ in result["examples"]} == planted
    assert all(d < 1e-9 for _, _, d in result["examples"])
    figure = memorization_figure(result)
    assert (figure.metric, figure.n, figure.value) == ("memorization_rate", 200, result["rate"])
    assert figure.ci_low <= 0.10 <= figure.ci_high


def test_independent_draws_are_not_memorized(world):
    bank, held_out, _ = world
    threshold = calibrate_threshold(held_out, bank, 0.01)
    result = memorization(gaussian(300, seed=15), bank, threshold)
    assert result["rate"] < 0.04 and result["ci_low"] < 0.01
    assert result["distances"].shape == (300,) and len(result["examples"]) == 10


def test_zero_feature_row_is_named():
    bad = gaussian(4, 8)
    bad[3] = 0
    with pytest.raises(ValueError, match="row 3"):
        nearest_neighbours(bad, gaussian(4, 8))
