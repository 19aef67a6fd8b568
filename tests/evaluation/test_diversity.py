"""Diversity metrics against their definitions and worlds with a known answer."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial.distance import cdist, pdist

from evaluation.stats import subsample_interval
from evaluation.diversity import (density_coverage, density_coverage_figures,
                                  mean_pairwise_distance, mean_pairwise_distance_figure,
                                  near_duplicate_figure, near_duplicate_rate, per_class,
                                  vendi_figure, vendi_score)


def gaussian(n, d=16, seed=0):
    return np.random.default_rng(seed).normal(size=(n, d))


def direct_vendi(x):
    x = x / np.linalg.norm(x, axis=1, keepdims=True)
    eig = np.linalg.eigvals(x @ x.T / len(x)).real  # the n x n definition, general solver
    eig = eig[eig > 1e-12]
    return float(np.exp(-(eig * np.log(eig)).sum()))


def direct_density_coverage(real, fake, k):
    """Naeem et al. 2020, eqs. for density and coverage, written out with explicit loops."""
    rr, rf = cdist(real, real), cdist(real, fake)
    radii = [sorted(row[np.arange(len(real)) != i])[k - 1] for i, row in enumerate(rr)]
    density = sum(rf[i, j] < radii[i] for i in range(len(real)) for j in range(len(fake)))
    coverage = sum(any(rf[i, j] < radii[i] for j in range(len(fake))) for i in range(len(real)))
    return density / (k * len(fake)), coverage / len(real)


def test_vendi_of_identical_samples_is_one():
    assert vendi_score(np.tile(gaussian(1), (20, 1))) == pytest.approx(1.0, abs=1e-9)


@pytest.mark.parametrize("n, d", [(8, 8), (5, 12)])  # the n x n and the D x D formulation
def test_vendi_of_orthogonal_samples_is_n(n, d):
    features = 3.0 * np.eye(d)[:n]  # scale must not matter: the kernel is cosine
    assert vendi_score(features) == pytest.approx(n, rel=1e-9)


@pytest.mark.parametrize("n, d", [(30, 8), (6, 40), (20, 20)])
def test_vendi_equals_direct_eigenvalue_computation(n, d):
    x = gaussian(n, d, seed=n)
    assert vendi_score(x) == pytest.approx(direct_vendi(x), rel=1e-8)


def test_vendi_of_collapsed_set_is_far_lower():
    diverse = gaussian(200, 32, seed=1)
    collapsed = gaussian(1, 32, seed=2) + 1e-3 * gaussian(200, 32, seed=3)
    assert vendi_score(collapsed) < 1.1
    assert vendi_score(diverse) > 10 * vendi_score(collapsed)


def test_vendi_rejects_unknown_kernel_and_zero_rows():
    with pytest.raises(ValueError, match="kernel"):
        vendi_score(gaussian(5), kernel="rbf")
    with pytest.raises(ValueError, match="row 2"):
        vendi_score(np.vstack([gaussian(2), np.zeros((1, 16))]))


def anisotropic(n, seed):
    """Features shaped like real embeddings: a shared mean direction and unequal variances."""
    return 0.5 + np.geomspace(3, 0.3, 12) * gaussian(n, 12, seed=seed)


@pytest.mark.parametrize("figure_fn, statistic", [
    (vendi_figure, vendi_score), (mean_pairwise_distance_figure, mean_pairwise_distance)])
def test_subsample_interval_is_centred_and_as_wide_as_the_spread_between_sets(figure_fn, statistic):
    """The delete-d interval must describe how the figure varies between independent sets
    (measured at 0.92-1.04 of it, and 93-96% coverage, over 150 sets)."""
    figure = figure_fn(anisotropic(300, seed=0), rounds=200)
    assert figure.ci_low < figure.value < figure.ci_high
    between = np.std([statistic(anisotropic(300, seed=s)) for s in range(1, 61)])
    half_width = (figure.ci_high - figure.ci_low) / 2
    assert 0.6 * 1.96 * between < half_width < 1.6 * 1.96 * between


@pytest.mark.parametrize("n, d", [(60, 8), (8, 60)])  # Gram downdate and direct subsets
def test_vendi_figure_interval_equals_direct_subset_scores(n, d):
    x = gaussian(n, d, seed=20)
    figure = vendi_figure(x, rounds=30, seed=3)
    lo, hi = subsample_interval(lambda idx: vendi_score(x[idx]), n, vendi_score(x), 30, seed=3)
    assert (figure.ci_low, figure.ci_high) == pytest.approx((lo, hi), rel=1e-9)


def test_subsample_interval_never_shows_the_statistic_a_duplicate():
    seen = []
    subsample_interval(lambda idx: seen.append(len(set(idx)) == len(idx) == 40) or 0.0, 50, 0.0,
                       rounds=20)
    assert all(seen) and len(seen) == 20


def test_density_coverage_equal_brute_force():
    real, fake = gaussian(40, 5, seed=4), gaussian(30, 5, seed=5) + 0.3
    for k in (1, 3, 5):
        expected = direct_density_coverage(real, fake, k)
        assert density_coverage(real, fake, k) == pytest.approx(expected)


def test_density_coverage_batches_agree():
    from evaluation.diversity import _ball_membership

    real, fake = gaussian(50, 6, seed=6), gaussian(35, 6, seed=7)
    full = _ball_membership(real, fake, 3, batch_size=1024)
    batched = _ball_membership(real, fake, 3, batch_size=7)
    assert all(np.array_equal(a, b) for a, b in zip(full, batched))


def test_identical_sets_have_full_coverage_and_density_near_one():
    real = gaussian(200, 8, seed=8)
    density, coverage = density_coverage(real, real.copy(), k=5)
    assert coverage == 1.0
    assert density == pytest.approx(1.0, abs=0.25)


def test_collapsed_fakes_lose_coverage():
    real = gaussian(200, 8, seed=9)
    _, coverage = density_coverage(real, real[:1] + 1e-3 * gaussian(200, 8, seed=10), k=5)
    assert coverage < 0.1


def test_density_coverage_figures():
    real, fake = gaussian(100, 8, seed=11), gaussian(80, 8, seed=12)
    density, coverage = density_coverage_figures(real, fake, k=5, rounds=100)
    assert (density.metric, density.n) == ("density", 80)
    assert (coverage.metric, coverage.n) == ("coverage", 100)
    assert density.ci_low <= density.value <= density.ci_high
    assert coverage.ci_low <= coverage.value <= coverage.ci_high
    too_few = density_coverage_figures(real[:5], fake, k=5)
    assert all(np.isnan(f.value) and "not computed" in f.details for f in too_few)


def test_mean_pairwise_distance_equals_scipy():
    x = gaussian(60, 10, seed=13)
    assert mean_pairwise_distance(x) == pytest.approx(pdist(x, "cosine").mean(), rel=1e-10)
    assert mean_pairwise_distance(np.tile(x[:1], (5, 1))) == pytest.approx(0.0, abs=1e-12)


def test_per_class_mean_pairwise_distance():
    x = np.vstack([gaussian(30, 8, seed=14), np.tile(gaussian(1, 8, seed=15), (30, 1))])
    labels = np.array(["diverse"] * 30 + ["collapsed"] * 30)
    figures = per_class(mean_pairwise_distance_figure, x, labels, rounds=50)
    by_group = {f.group: f for f in figures}
    assert set(by_group) == {"collapsed", "diverse"}
    assert by_group["collapsed"].value == pytest.approx(0.0, abs=1e-12)
    assert by_group["diverse"].value == pytest.approx(pdist(x[:30], "cosine").mean())
    assert by_group["diverse"].ci_low < by_group["diverse"].value < by_group["diverse"].ci_high
    assert all(f.n == 30 for f in figures)


def test_near_duplicates_are_found_at_the_planted_rate():
    distinct = gaussian(100, 32, seed=16)
    copies = distinct[:10] * 2.0  # same direction, so cosine similarity 1
    x = np.random.default_rng(17).permutation(np.vstack([distinct, copies]))
    rate, pairs = near_duplicate_rate(x, threshold=0.99)
    assert rate == pytest.approx(20 / 110)
    assert len(pairs) == 20
    assert all(s >= 0.99 and np.allclose(x[i] / np.linalg.norm(x[i]), x[j] / np.linalg.norm(x[j]))
               for i, j, s in pairs)
    figure = near_duplicate_figure(x, threshold=0.99)
    assert figure.ci_low < 20 / 110 < figure.ci_high and figure.n == 110
    i, j, _ = pairs[0]
    named = near_duplicate_figure(x, threshold=0.99, names=[f"#{100 + k}" for k in range(110)])
    assert f"top: #{100 + i}~#{100 + j} (" in named.details  # sample ids, as memorization names them


def test_no_near_duplicates_in_independent_draws():
    rate, pairs = near_duplicate_rate(gaussian(200, 32, seed=18), threshold=0.99)
    assert rate == 0.0 and pairs == []
