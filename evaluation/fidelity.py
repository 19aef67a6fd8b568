"""Fidelity figures from cached features, computed by torch-fidelity's feature-level functions.

FID (Heusel et al. 2017), KID (Binkowski et al. 2018), IS (Salimans et al. 2016) and precision /
recall (Kynkaanniemi et al. 2019) all come from one feature pass per set; each figure carries N and
an interval: a bootstrap over the synthetic samples for FID, the metric's own spread over subsets
or splits for KID and IS, and Wilson intervals for precision and recall.

The functions are modality-neutral: they see feature arrays only. A figure's ``name`` says what it
is for the modality whose metric calls it: the image metrics write ``fid``, ``kid`` and
``inception_score``; the audio metrics (``evaluation.audio.fidelity``) call the same functions for
``fad``, ``audio_kid`` and ``audio_is``.
"""

from __future__ import annotations

import numpy as np
import torch
from torch_fidelity.metric_fid import KEY_METRIC_FID, fid_features_to_statistics, fid_statistics_to_metric
from torch_fidelity.metric_isc import KEY_METRIC_ISC_MEAN, KEY_METRIC_ISC_STD, isc_features_to_metric
from torch_fidelity.metric_kid import (KEY_METRIC_KID_MEAN, KEY_METRIC_KID_STD, kernel_poly,
                                      kid_features_to_metric, mmd2)
from torch_fidelity.metric_prc import KEY_METRIC_PRECISION, KEY_METRIC_RECALL, prc_features_to_metric

from evaluation.figures import Figure
from evaluation.inputs import MetricInputs
from evaluation.stats import subsample_interval, wilson_interval

FID_MIN_N = 2048  # below this, FID is biased upward enough to mislead (Chong & Forsyth 2020)


def _t(x: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(x, dtype=np.float64))


def statistics(features: np.ndarray) -> dict:
    """Mean and covariance of features (N, D), as torch-fidelity computes them."""
    return fid_features_to_statistics(_t(features))


def frechet_distance(stats_1: dict, stats_2: dict) -> float:
    return float(fid_statistics_to_metric(stats_1, stats_2, verbose=False)[KEY_METRIC_FID])


class FrechetToReference:
    """Frechet distance of many sets to one fixed reference, for interval replicates.

    Exactly torch-fidelity's formula, |mu_g - mu_r|^2 + tr S_g + tr S_r - 2 tr sqrt(S_g S_r), with
    tr sqrt(S_g S_r) taken from the eigenvalues of the symmetric R S_g R (R = S_r^1/2, computed
    once): the same eigenvalues as S_g S_r, from a symmetric solver that is ~10x faster than the
    general one. The point estimate itself still comes from torch-fidelity.
    """

    def __init__(self, ref_stats: dict):
        self.mu = np.asarray(ref_stats["mu"], dtype=np.float64)
        sigma = np.asarray(ref_stats["sigma"], dtype=np.float64)
        w, v = np.linalg.eigh((sigma + sigma.T) / 2)
        self.root = (v * np.sqrt(np.clip(w, 0, None))) @ v.T
        self.trace = float(np.trace(sigma))

    def __call__(self, features: np.ndarray) -> float:
        stats = statistics(features)
        m = self.root @ stats["sigma"] @ self.root
        eig = np.linalg.eigvalsh((m + m.T) / 2)
        diff = stats["mu"] - self.mu
        return float(diff @ diff + np.trace(stats["sigma"]) + self.trace
                     - 2 * np.sqrt(np.clip(eig, 0, None)).sum())

    def of_subsets(self, features: np.ndarray):
        """``fn(idx) == self(features[idx])`` for subsets of distinct rows, cheaper per call.

        With z = (x - c) R for the full set's mean c, R S_idx R is the covariance of z[idx], so it
        is formed by downdating the full set's z^T z by the rows left out (an 80% subset leaves out
        a quarter as many rows as it keeps) instead of recomputing S and two D x D products.
        """
        x = np.asarray(features, dtype=np.float64)
        n = len(x)
        centre = x.mean(0)
        xc = x - centre
        z = xc @ self.root
        zz, z_sum, x_sum = z.T @ z, z.sum(0), xc.sum(0)
        sq = np.einsum("ij,ij->i", xc, xc)
        sq_sum = sq.sum()

        def fn(idx: np.ndarray) -> float:
            idx = np.asarray(idx)
            m = len(idx)
            if 2 * m >= n:  # downdate by the rows left out
                out = np.ones(n, dtype=bool)
                out[idx] = False
                if n - int(out.sum()) != m:
                    raise ValueError("of_subsets needs distinct row indices")
                zo, xo = z[out], xc[out]
                zs, zm, xm = zz - zo.T @ zo, (z_sum - zo.sum(0)) / m, (x_sum - xo.sum(0)) / m
                sq_m = sq_sum - sq[out].sum()
            else:
                zi, xi = z[idx], xc[idx]
                zs, zm, xm, sq_m = zi.T @ zi, zi.mean(0), xi.mean(0), sq[idx].sum()
            cov_z = (zs - m * np.outer(zm, zm)) / (m - 1)
            eig = np.linalg.eigvalsh((cov_z + cov_z.T) / 2)
            diff = centre + xm - self.mu
            trace = (sq_m - m * xm @ xm) / (m - 1)
            return float(diff @ diff + trace + self.trace - 2 * np.sqrt(np.clip(eig, 0, None)).sum())

        return fn


def fid(gen: np.ndarray, ref_stats: dict, n_ref: int, rounds: int = 100, confidence: float = 0.95,
        seed: int = 0, group: str = "all", name: str = "fid") -> Figure:
    """FID (figure ``name``) of generated features against reference statistics.

    The interval is a delete-d jackknife over the generated set (the reference is fixed): the
    uncertainty due to the finite synthetic sample. A plain bootstrap would repeat samples, which
    shrinks the covariance and pushes every replicate's FID above the estimate.
    """
    value = frechet_distance(statistics(gen), ref_stats)
    to_ref = FrechetToReference(ref_stats)
    lo, hi = subsample_interval(to_ref.of_subsets(gen), len(gen), value, rounds, confidence, seed)
    details = (f"delete-d jackknife ({rounds} subsets of 80%) over generated samples; "
               f"reference n={n_ref}")
    if min(len(gen), n_ref) < FID_MIN_N:
        details += (f"; WARNING: {name} is biased upward below {FID_MIN_N} samples per set "
                    f"(compare the unbiased KID, or {name}_infinity)")
    return Figure(name, value, lo, hi, len(gen), group, details)


def fid_infinity(gen: np.ndarray, ref_stats: dict, points: int = 10, seed: int = 0,
                 group: str = "all", name: str = "fid_infinity") -> Figure:
    """Frechet distance (figure ``name``) extrapolated to infinite N (Chong & Forsyth 2020): fit FID_N = a + b / N on subsets of
    sizes N/5..N and report a; the interval is +-1.96 standard errors of the fitted intercept."""
    rng = np.random.default_rng(seed)
    sizes = np.linspace(max(len(gen) // 5, 10), len(gen), points).astype(int)
    of_subsets = FrechetToReference(ref_stats).of_subsets(gen)
    values = [of_subsets(rng.choice(len(gen), n, replace=False)) for n in sizes]
    coef, cov = np.polyfit(1.0 / sizes, values, 1, cov=True)
    se = float(np.sqrt(cov[1, 1]))
    return Figure(name, float(coef[1]), float(coef[1] - 1.96 * se),
                  float(coef[1] + 1.96 * se), len(gen), group,
                  f"linear fit of the Frechet distance over 1/N at N={sizes.tolist()}")


_KID_KERNEL = {"kid_kernel_poly_degree": 3, "kid_kernel_poly_gamma": None, "kid_kernel_poly_coef0": 1}
_KID_KERNEL_MAX_ENTRIES = 32_000_000  # 256 MB of float64 kernel matrices


class KidKernels:
    """KID of row subsets of two fixed sets from their kernel matrices, computed once.

    torch-fidelity's ``kid_features_to_metric`` draws m rows of each set per subset and evaluates
    the polynomial kernel on them. A pair's kernel value does not depend on the subset, so here
    torch-fidelity's ``kernel_poly`` runs once on the full sets and each subset takes its blocks
    into torch-fidelity's ``mmd2``, with the same ``RandomState`` draws: the same subsets, the same
    estimator, the same numbers (tested equal), for every group of the sets at once.
    """

    def __init__(self, gen: np.ndarray, ref: np.ndarray):
        gen, ref = np.asarray(gen, np.float64), np.asarray(ref, np.float64)
        self.k_gg = kernel_poly(gen, gen, **_KID_KERNEL)
        self.k_rr = kernel_poly(ref, ref, **_KID_KERNEL)
        self.k_gr = kernel_poly(gen, ref, **_KID_KERNEL)

    @staticmethod
    def worth_it(n_gen: int, n_ref: int, subset_size: int, subsets: int) -> bool:
        """Cheaper than per-subset kernels, and small enough to hold in memory."""
        entries = n_gen * n_gen + n_ref * n_ref + n_gen * n_ref
        return entries <= min(_KID_KERNEL_MAX_ENTRIES, 3 * subsets * subset_size * subset_size)

    def mmds(self, gen_rows: np.ndarray, ref_rows: np.ndarray, subset_size: int, subsets: int,
             seed: int) -> np.ndarray:
        """Unbiased MMD^2 of each subset, drawn exactly as ``kid_features_to_metric`` draws them."""
        rng = np.random.RandomState(seed)
        out = np.zeros(subsets)
        for i in range(subsets):
            a = gen_rows[rng.choice(len(gen_rows), subset_size, replace=False)]
            b = ref_rows[rng.choice(len(ref_rows), subset_size, replace=False)]
            out[i] = mmd2(self.k_gg[np.ix_(a, a)], self.k_gr[np.ix_(a, b)], self.k_rr[np.ix_(b, b)])
        return out


def kid(gen: np.ndarray, ref: np.ndarray, subset_size: int = 1000, subsets: int = 100,
        seed: int = 0, group: str = "all", kernels: KidKernels | None = None,
        rows: tuple[np.ndarray, np.ndarray] | None = None, name: str = "kid") -> Figure:
    """Unbiased KID (polynomial kernel MMD^2) averaged over random subsets; interval = mean +- std.

    ``kernels`` + ``rows``: ``gen``/``ref`` are the rows ``rows`` of the sets ``kernels`` was built
    on (per-group figures share one set of kernel matrices). Otherwise kernels are built here when
    that is cheaper than torch-fidelity's per-subset ones, else torch-fidelity runs as is.
    """
    size = min(subset_size, len(gen), len(ref))
    if kernels is None and KidKernels.worth_it(len(gen), len(ref), size, subsets):
        kernels, rows = KidKernels(gen, ref), (np.arange(len(gen)), np.arange(len(ref)))
    if kernels is not None:
        mmds = kernels.mmds(np.asarray(rows[0]), np.asarray(rows[1]), size, subsets, seed)
        mean, std = float(np.mean(mmds)), float(np.std(mmds))
    else:
        out = kid_features_to_metric(_t(gen), _t(ref), kid_subsets=subsets, kid_subset_size=size,
                                     kid_kernel="poly", **_KID_KERNEL, rng_seed=seed, verbose=False)
        mean, std = out[KEY_METRIC_KID_MEAN], out[KEY_METRIC_KID_STD]
    return Figure(name, mean, mean - std, mean + std, len(gen), group,
                  f"{subsets} subsets of {size}; interval = mean +- std over subsets")


def inception_score(logits: np.ndarray, splits: int = 10, seed: int = 0,
                    group: str = "all", name: str = "inception_score") -> Figure:
    """IS over ``splits`` splits; interval = mean +- std over splits (torch-fidelity's figure)."""
    splits = max(1, min(splits, len(logits) // 2))
    out = isc_features_to_metric(torch.from_numpy(np.asarray(logits, dtype=np.float32)),
                                 splits=splits, shuffle=True, rng_seed=seed)
    mean, std = out[KEY_METRIC_ISC_MEAN], out[KEY_METRIC_ISC_STD]
    return Figure(name, mean, mean - std, mean + std, len(logits), group,
                  f"{splits} splits; interval = mean +- std over splits")


def precision_recall(gen: np.ndarray, ref: np.ndarray, neighborhood: int = 3,
                     confidence: float = 0.95, group: str = "all") -> list[Figure]:
    """Improved precision and recall (k-NN manifolds); Wilson intervals over samples."""
    if min(len(gen), len(ref)) <= neighborhood:
        return []
    out = prc_features_to_metric(torch.from_numpy(np.asarray(gen, np.float32)),
                                 torch.from_numpy(np.asarray(ref, np.float32)),
                                 prc_neighborhood=neighborhood, prc_batch_size=10000,
                                 save_cpu_ram=False, verbose=False)
    figures = []
    for metric, key, n in (("precision", KEY_METRIC_PRECISION, len(gen)),
                           ("recall", KEY_METRIC_RECALL, len(ref))):
        value = float(out[key])
        lo, hi = wilson_interval(round(value * n), n, confidence)
        figures.append(Figure(metric, value, lo, hi, n, group,
                              f"k={neighborhood}; Wilson interval over {n} samples, manifolds fixed"))
    return figures


# Metrics (``evaluation.registry``): the figures above for the whole set and for each group ---------

def _compared(inputs: MetricInputs) -> list[tuple[str, np.ndarray, np.ndarray, str]]:
    """(group, its rows, the reference rows it is compared with, a note saying which) for the whole
    set and each group: a group is compared with the reference's group of the same name when that
    has ``min_group_size`` members, else with the whole reference."""
    ref, min_size = inputs.reference, inputs.spec.min_group_size
    out = []
    for group, members in inputs.targets():
        ref_rows = ref.groups.get(group)
        if ref_rows is not None and len(ref_rows) >= min_size:
            out.append((group, members, np.asarray(ref_rows), f"reference group {group}"))
        else:
            out.append((group, members, np.arange(len(ref.features)), "whole reference"))
    return out


def score_fid(inputs: MetricInputs, figure: str = "fid") -> list[Figure]:
    """FID (figure ``figure``) of the set and of each group; a group below ``min_group_size`` gets
    a NaN row saying it was skipped."""
    spec, ref = inputs.spec, inputs.reference
    feats = inputs.arrays()["features"]
    out = []
    for group, members, ref_rows, against in _compared(inputs):
        if len(members) < spec.min_group_size:
            out.append(Figure(figure, float("nan"), float("nan"), float("nan"), len(members), group,
                              f"skipped: n={len(members)} < min_group_size {spec.min_group_size}"))
            continue
        rounds = spec.bootstrap_rounds if group == "all" else min(spec.bootstrap_rounds, 30)
        found = fid(feats[members], statistics(ref.features[ref_rows]), len(ref_rows), rounds,
                    spec.confidence, spec.seed, group, figure)
        found.details += f"; against {against}"
        out.append(found)
    return out


def score_fid_infinity(inputs: MetricInputs, figure: str = "fid_infinity") -> list[Figure]:
    """FID extrapolated to infinite N, of the whole set against the whole reference."""
    feats = inputs.arrays()["features"]
    if len(feats) < inputs.spec.min_group_size:
        return []
    return [fid_infinity(feats, statistics(inputs.reference.features), seed=inputs.spec.seed,
                         name=figure)]


def score_kid(inputs: MetricInputs, figure: str = "kid") -> list[Figure]:
    """KID of the set and of each group of ``min_group_size`` or more, from one set of kernel
    matrices when that is cheaper."""
    spec, ref = inputs.spec, inputs.reference
    feats = inputs.arrays()["features"]
    size = min(spec.kid_subset_size, len(feats), len(ref.features))
    kernels = (KidKernels(feats, ref.features) if KidKernels.worth_it(
        len(feats), len(ref.features), size, spec.kid_subsets) else None)
    out = []
    for group, members, ref_rows, against in _compared(inputs):
        if len(members) >= spec.min_group_size:
            found = kid(feats[members], ref.features[ref_rows], spec.kid_subset_size,
                        spec.kid_subsets, spec.seed, group, kernels, (members, ref_rows), figure)
            found.details += f"; against {against}"
            out.append(found)
    return out


def score_prc(inputs: MetricInputs) -> list[Figure]:
    """Precision and recall of the set and of each group of ``min_group_size`` or more."""
    spec, ref = inputs.spec, inputs.reference
    feats = inputs.arrays()["features"]
    return [figure for group, members, ref_rows, _ in _compared(inputs)
            if len(members) >= spec.min_group_size
            for figure in precision_recall(feats[members], ref.features[ref_rows],
                                           spec.prc_neighborhood, spec.confidence, group)]


def score_is(inputs: MetricInputs, figure: str = "inception_score",
             need: str = "fidelity") -> list[Figure]:
    """Inception score of the set, from the logits of the extractor that meets ``need``."""
    return [inception_score(inputs.arrays(need)["logits"], inputs.spec.is_splits, inputs.spec.seed,
                            name=figure)]
