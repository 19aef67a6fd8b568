"""Fidelity figures against independent computations and worlds with a known answer."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import linalg

import torch
from torch_fidelity.metric_kid import kid_features_to_metric

from evaluation.fidelity import (FrechetToReference, KidKernels, fid, fid_infinity, frechet_distance,
                                 inception_score, kid, precision_recall, statistics)
from evaluation.stats import bootstrap_ci, mean_ci, wilson_interval

rng = np.random.default_rng(0)


def gaussian(n, d=16, shift=0.0, scale=1.0, seed=0):
    r = np.random.default_rng(seed)
    return r.normal(shift, scale, size=(n, d))


def direct_frechet(a, b):
    mu1, mu2 = a.mean(0), b.mean(0)
    s1, s2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    covmean = linalg.sqrtm(s1 @ s2).real
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1 + s2 - 2 * covmean))


def direct_unbiased_mmd2(x, y):
    d = x.shape[1]
    k = lambda a, b: (a @ b.T / d + 1) ** 3  # noqa: E731  (KID's polynomial kernel)
    m = len(x)
    kxx, kyy, kxy = k(x, x), k(y, y), k(x, y)
    return ((kxx.sum() - np.trace(kxx)) / (m * (m - 1)) + (kyy.sum() - np.trace(kyy)) / (m * (m - 1))
            - 2 * kxy.mean())


def test_frechet_distance_matches_scipy():
    a, b = gaussian(500, seed=1), gaussian(500, shift=0.3, scale=1.2, seed=2)
    ours = frechet_distance(statistics(a), statistics(b))
    assert ours == pytest.approx(direct_frechet(a, b), rel=1e-4)


def test_interval_replicates_use_the_same_frechet_distance():
    ref = gaussian(300, d=32, seed=5)
    to_ref = FrechetToReference(statistics(ref))
    for shift, n in ((0.0, 300), (0.3, 120), (1.0, 40)):  # n=40 < d+1: singular covariance
        a = gaussian(n, d=32, shift=shift, scale=1.1, seed=6)
        assert to_ref(a) == pytest.approx(direct_frechet(a, ref), rel=1e-6, abs=1e-6)


def test_subset_replicates_equal_the_direct_frechet_distance():
    ref, gen = gaussian(300, d=24, seed=10), gaussian(150, d=24, shift=0.4, scale=1.3, seed=11)
    to_ref = FrechetToReference(statistics(ref))
    of_subsets = to_ref.of_subsets(gen)
    r = np.random.default_rng(12)
    for m in (150, 120, 60, 20):  # downdated (m >= n/2) and direct (m < n/2) branches
        idx = r.choice(150, m, replace=False)
        assert of_subsets(idx) == pytest.approx(to_ref(gen[idx]), rel=1e-9, abs=1e-9)
    with pytest.raises(ValueError, match="distinct"):
        of_subsets(np.r_[np.arange(100), [0]])


@pytest.mark.parametrize("n_gen, n_ref, size", [(120, 90, 60), (80, 80, 80),
                                                 (400, 300, 20)])  # last: per-subset kernels
def test_kid_from_shared_kernels_equals_torch_fidelity(n_gen, n_ref, size):
    gen, ref = gaussian(n_gen, seed=13), gaussian(n_ref, shift=0.2, seed=14)
    expected = kid_features_to_metric(torch.from_numpy(gen), torch.from_numpy(ref), kid_subsets=25,
                                      kid_subset_size=size, rng_seed=3, verbose=False)
    figure = kid(gen, ref, subset_size=size, subsets=25, seed=3)
    assert KidKernels.worth_it(n_gen, n_ref, size, 25) == (size > 20)
    assert figure.value == pytest.approx(expected["kernel_inception_distance_mean"], rel=1e-9)
    assert figure.ci_high - figure.value == pytest.approx(expected["kernel_inception_distance_std"],
                                                          rel=1e-9)
    # a group's KID through the kernels of the whole sets equals KID of the group's rows alone
    members, ref_rows = np.arange(0, n_gen, 2), np.arange(10, n_ref)
    kernels = KidKernels(gen, ref)
    group = kid(gen[members], ref[ref_rows], size // 2, 25, 4, "g", kernels, (members, ref_rows))
    alone = kid_features_to_metric(torch.from_numpy(gen[members]), torch.from_numpy(ref[ref_rows]),
                                   kid_subsets=25, kid_subset_size=size // 2, rng_seed=4, verbose=False)
    assert group.value == pytest.approx(alone["kernel_inception_distance_mean"], rel=1e-9)


def test_kid_matches_the_unbiased_mmd_formula():
    a, b = gaussian(200, seed=3), gaussian(200, shift=0.2, seed=4)
    # one subset holding every sample: KID is exactly the unbiased MMD^2 of the two sets
    figure = kid(a, b, subset_size=200, subsets=1)
    assert figure.value == pytest.approx(direct_unbiased_mmd2(a, b), rel=1e-6)


def test_identical_sets_score_perfectly():
    a = gaussian(400, seed=5)
    assert fid(a, statistics(a), len(a), rounds=0).value == pytest.approx(0.0, abs=1e-6)
    # KID is unbiased: two independent draws of one distribution average ~0, unlike a shift
    same = kid(a, gaussian(400, seed=55), subset_size=200, subsets=50).value
    assert abs(same) < 0.2 * kid(a, gaussian(400, shift=0.3, seed=55), 200, 50).value
    p, r = precision_recall(a, a)
    assert p.value == pytest.approx(1.0) and r.value == pytest.approx(1.0)


def test_distance_grows_with_the_shift():
    ref = gaussian(600, seed=6)
    fids = [fid(gaussian(600, shift=s, seed=7), statistics(ref), 600, rounds=0).value
            for s in (0.0, 0.2, 0.5, 1.0)]
    kids = [kid(gaussian(600, shift=s, seed=7), ref, 300, 20).value for s in (0.0, 0.2, 0.5, 1.0)]
    assert fids == sorted(fids) and kids == sorted(kids) and fids[-1] > 10 * fids[0]


def test_fid_interval_brackets_the_value_and_warns_below_2048():
    a, b = gaussian(300, seed=8), gaussian(300, shift=0.5, seed=9)
    figure = fid(a, statistics(b), len(b), rounds=50)
    assert figure.ci_low <= figure.value * 1.05 and figure.ci_high >= figure.value * 0.95
    assert "biased upward" in figure.details and figure.n == 300


def test_fid_interval_is_the_delete_d_jackknife_of_its_docstring():
    """Recomputed from the definition in ``evaluation.stats.subsample_interval``: FID of `rounds`
    subsets of 80% of the generated rows (drawn in the same order from the same seed), their
    deviations from the subsets' mean scaled by sqrt(m / (n - m)), percentiles added to the value."""
    gen, ref = gaussian(120, d=8, shift=0.4, seed=20), gaussian(200, d=8, seed=21)
    n, m, rounds, seed = len(gen), 96, 40, 7
    figure = fid(gen, statistics(ref), len(ref), rounds=rounds, confidence=0.9, seed=seed)
    draws = np.random.default_rng(seed)
    subsets = np.array([direct_frechet(gen[draws.choice(n, m, replace=False)], ref)
                        for _ in range(rounds)])
    scaled = np.sqrt(m / (n - m)) * (subsets - subsets.mean())
    value = direct_frechet(gen, ref)
    assert figure.value == pytest.approx(value, rel=1e-6)
    assert figure.ci_low == pytest.approx(value + np.quantile(scaled, 0.05), rel=1e-6)
    assert figure.ci_high == pytest.approx(value + np.quantile(scaled, 0.95), rel=1e-6)
    assert figure.ci_low < figure.value < figure.ci_high
    assert figure.ci_high - figure.ci_low > 0.1 * figure.value


def test_collapsed_generator_has_low_recall():
    ref = gaussian(400, seed=10)
    collapsed = np.repeat(ref[:1], 400, axis=0) + 1e-3 * gaussian(400, seed=11)
    p, r = precision_recall(collapsed, ref)
    assert r.value < 0.05 and p.value > 0.9
    assert r.ci_low <= r.value <= r.ci_high


def test_inception_score_is_higher_for_balanced_confident_classes():
    balanced = np.eye(10)[np.arange(500) % 10] * 20
    one_class = np.eye(10)[np.zeros(500, int)] * 20
    hi, lo = inception_score(balanced, splits=1), inception_score(one_class, splits=1)
    assert hi.value == pytest.approx(10, rel=1e-3) and lo.value == pytest.approx(1, rel=1e-3)


def test_fid_infinity_extrapolates_a_known_bias():
    ref = gaussian(4000, d=8, seed=12)
    figure = fid_infinity(gaussian(2000, d=8, seed=13), statistics(ref))
    finite = fid(gaussian(2000, d=8, seed=13), statistics(ref), 4000, rounds=0).value
    assert figure.value < finite  # the 1/N bias is removed


def test_wilson_and_bootstrap_intervals():
    lo, hi = wilson_interval(50, 100)
    assert lo < 0.5 < hi and hi - lo == pytest.approx(0.19, abs=0.01)
    values = np.random.default_rng(1).normal(3, 1, 400)
    mean, lo, hi = mean_ci(values)
    assert lo < 3 < hi and hi - lo == pytest.approx(2 * 1.96 / 20, rel=0.2)
    assert np.isnan(bootstrap_ci(lambda i: 0.0, 1)[0])
