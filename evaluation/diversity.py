"""Diversity of a generated set from its features: Vendi score, density and coverage, mean pairwise
distance and near duplicates.

All inputs are feature arrays (N, D) of any float dtype (computed in float64). The Vendi score,
pairwise distances and near duplicates use cosine similarity on L2-normalised features, as CLIP
features are compared; density and coverage use Euclidean distance on the features as given, as
Naeem et al. 2020 (and torch-fidelity's precision/recall) do.

Intervals: statistics of pairs of samples (Vendi, mean pairwise distance) are not bootstrapped,
because a resample drawn with replacement repeats samples, and each repeat is a perfect duplicate
pair that lowers both. They get a delete-d jackknife interval over subsets without replacement
(``subsample_interval``). Per-sample means get a bootstrap, proportions a Wilson interval.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from evaluation.figures import Figure
from evaluation.inputs import MetricInputs
from evaluation.neighbours import l2_normalise, nearest_neighbours
from evaluation.stats import SUBSAMPLE_FRACTION, mean_ci, subsample_interval, wilson_interval


def vendi_score(features: np.ndarray, kernel: str = "cosine") -> float:
    """Vendi score (Friedman & Dieng 2023): exp of the Shannon entropy of the eigenvalues of K / N.

    ``features`` (N, D); ``K_ij = cos(x_i, x_j)``, so ``K_ii = 1`` and the eigenvalues sum to 1. The
    score is the effective number of distinct samples: 1 when all are identical, N when they are
    mutually orthogonal (at most min(N, D)). With X the normalised features, ``X X^T / N`` (N x N)
    and ``X^T X / N`` (D x D) share their non-zero eigenvalues, so the smaller one is decomposed.
    The finite-sample score grows with N towards its population value: compare sets of equal N.
    """
    if kernel != "cosine":
        raise ValueError(f"kernel must be 'cosine', got {kernel!r}")
    x = l2_normalise(features)
    n, d = x.shape
    if n == 0:
        raise ValueError("vendi_score needs at least one sample")
    return _vendi_of_gram((x @ x.T if n <= d else x.T @ x) / n)


def _vendi_of_gram(scaled_gram: np.ndarray) -> float:
    """exp of the entropy of the eigenvalues of a symmetric PSD matrix with unit trace."""
    eigenvalues = np.linalg.eigvalsh(scaled_gram)
    eigenvalues = eigenvalues[eigenvalues > 1e-12]  # round-off leaves tiny negatives; 0 log 0 = 0
    return float(np.exp(-(eigenvalues * np.log(eigenvalues)).sum()))


def vendi_figure(features: np.ndarray, group: str = "all", rounds: int = 100,
                 confidence: float = 0.95, seed: int = 0) -> Figure:
    """``vendi_score`` with a delete-d jackknife interval (``subsample_interval``)."""
    x = l2_normalise(features)
    n, d = x.shape
    value = vendi_score(x)
    if n > d:
        # Subsets share 80% of their rows: downdating the full D x D Gram by the removed rows
        # costs a quarter of recomputing it, which dominates at 10k x 512 features.
        gram = x.T @ x

        def statistic(idx: np.ndarray) -> float:
            removed = np.ones(n, dtype=bool)
            removed[idx] = False
            return _vendi_of_gram((gram - x[removed].T @ x[removed]) / len(idx))
    else:
        def statistic(idx: np.ndarray) -> float:
            return vendi_score(x[idx])
    lo, hi = subsample_interval(statistic, n, value, rounds, confidence, seed)
    return Figure("vendi", value, lo, hi, len(features), group,
                  f"cosine kernel; delete-d jackknife: {rounds} subsets of "
                  f"{SUBSAMPLE_FRACTION:.0%} without replacement "
                  "(bootstrap duplicates lower Vendi)")


def _euclidean(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Distances (len(a), len(b)) by the Gram expansion: BLAS-fast, exact to ~1e-8 relative."""
    sq = (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2.0 * a @ b.T
    return np.sqrt(np.maximum(sq, 0.0))


def _knn_radii(real: np.ndarray, k: int, batch_size: int) -> np.ndarray:
    """Distance (N,) from each real sample to its k-th nearest other real sample."""
    radii = np.empty(len(real))
    for start in range(0, len(real), batch_size):
        d = _euclidean(real[start:start + batch_size], real)  # (batch, N)
        rows = np.arange(len(d))
        d[rows, start + rows] = np.inf  # a sample is not its own neighbour
        radii[start:start + len(d)] = np.partition(d, k - 1, axis=1)[:, k - 1]
    return radii


def _ball_membership(real: np.ndarray, fake: np.ndarray, k: int,
                     batch_size: int = 1024) -> tuple[np.ndarray, np.ndarray]:
    """For each fake sample, the number of real k-NN balls containing it (M,) int64; for each
    real sample, whether its ball contains any fake sample (N,) bool. Real rows go in batches."""
    real = np.asarray(real, dtype=np.float64)
    fake = np.asarray(fake, dtype=np.float64)
    if len(real) <= k:
        raise ValueError(f"density/coverage with k={k} needs more than {k} real samples, "
                         f"got {len(real)}")
    radii = _knn_radii(real, k, batch_size)
    counts = np.zeros(len(fake), dtype=np.int64)
    covered = np.zeros(len(real), dtype=bool)
    for start in range(0, len(real), batch_size):
        stop = start + batch_size
        inside = _euclidean(real[start:stop], fake) < radii[start:stop, None]  # (batch, M)
        counts += inside.sum(0)
        covered[start:stop] = inside.any(1)
    return counts, covered


def density_coverage(real: np.ndarray, fake: np.ndarray, k: int = 5) -> tuple[float, float]:
    """Density and coverage of Naeem et al. 2020 ("Reliable fidelity and diversity metrics").

    ``real`` (N, D), ``fake`` (M, D); B(r_i) is the ball around real sample i with radius its
    distance to its k-th nearest real neighbour. Density = ``1/(kM) sum_j sum_i 1[f_j in B(r_i)]``
    (about 1 when fake matches real, above 1 when fakes crowd dense real regions); coverage =
    ``1/N sum_i 1[some f_j in B(r_i)]`` in [0, 1], the share of real modes the fakes reach.
    """
    counts, covered = _ball_membership(real, fake, k)
    return float(counts.sum() / (k * len(counts))), float(covered.mean())


def density_coverage_figures(real: np.ndarray, fake: np.ndarray, k: int = 5, rounds: int = 200,
                             confidence: float = 0.95, seed: int = 0,
                             group: str = "all") -> list[Figure]:
    """Density (bootstrap over fake samples) and coverage (Wilson over real samples), real
    manifold fixed. Fewer than k + 1 real samples: NaN figures that say so."""
    if len(real) <= k or len(fake) == 0:
        why = f"not computed: needs more than k={k} real and at least 1 fake sample"
        return [Figure(m, float("nan"), float("nan"), float("nan"), n, group, why)
                for m, n in (("density", len(fake)), ("coverage", len(real)))]
    counts, covered = _ball_membership(real, fake, k)
    density, lo, hi = mean_ci(counts / k, rounds, confidence, seed)
    cov_lo, cov_hi = wilson_interval(int(covered.sum()), len(covered), confidence)
    return [Figure("density", density, lo, hi, len(fake), group,
                   f"k={k}; bootstrap {rounds} rounds over fake samples; real n={len(real)}"),
            Figure("coverage", float(covered.mean()), cov_lo, cov_hi, len(real), group,
                   f"k={k}; Wilson interval over real samples; fake n={len(fake)}")]


def mean_pairwise_distance(features: np.ndarray) -> float:
    """Mean cosine distance ``1 - cos(x_i, x_j)`` over pairs i < j of ``features`` (N >= 2, D).

    With unit rows, ``sum_{i != j} x_i . x_j = |sum_i x_i|^2 - N``, so this costs O(N D), not
    O(N^2 D). 0 for a collapsed set; about 1 for unrelated directions.
    """
    x = l2_normalise(features)
    n = len(x)
    if n < 2:
        raise ValueError(f"mean_pairwise_distance needs at least 2 samples, got {n}")
    total = x.sum(0)
    return float(1.0 - (total @ total - n) / (n * (n - 1)))


def mean_pairwise_distance_figure(features: np.ndarray, group: str = "all", rounds: int = 100,
                                  confidence: float = 0.95, seed: int = 0) -> Figure:
    """``mean_pairwise_distance`` with a delete-d jackknife interval (``subsample_interval``)."""
    features = np.asarray(features)
    if len(features) < 2:
        return Figure("mean_pairwise_distance", float("nan"), float("nan"), float("nan"),
                      len(features), group, "not computed: needs at least 2 samples")
    value = mean_pairwise_distance(features)
    lo, hi = subsample_interval(lambda idx: mean_pairwise_distance(features[idx]), len(features),
                                value, rounds, confidence, seed)
    return Figure("mean_pairwise_distance", value, lo, hi, len(features), group,
                  f"cosine distance; delete-d jackknife: {rounds} subsets of "
                  f"{SUBSAMPLE_FRACTION:.0%} without replacement")


def near_duplicate_rate(features: np.ndarray,
                        threshold: float) -> tuple[float, list[tuple[int, int, float]]]:
    """Share of samples whose nearest other sample in the set has cosine similarity >= threshold.

    ``features`` (N >= 2, D). Returns ``(rate, pairs)``: one ``(i, j, similarity)`` per flagged
    sample i, j its nearest neighbour, most similar first. A duplicated pair flags both of its
    samples, so ``rate == len(pairs) / N``.
    """
    distances, indices = nearest_neighbours(features, features, exclude_self=True)
    similarity = 1.0 - distances
    flagged = np.flatnonzero(similarity >= threshold)
    flagged = flagged[np.argsort(-similarity[flagged], kind="stable")]
    pairs = [(int(i), int(indices[i]), float(similarity[i])) for i in flagged]
    return len(pairs) / len(distances), pairs


def near_duplicate_figure(features: np.ndarray, threshold: float, confidence: float = 0.95,
                          group: str = "all", names: list[str] | None = None) -> Figure:
    """``near_duplicate_rate`` with a Wilson interval; pairs named by ``names`` (row i's name,
    e.g. a sample id ``#58``; default: the row number).

    Flags come in clusters (a duplicated pair flags two samples), so the samples are not
    independent and the interval is somewhat too narrow when duplicates are common.
    """
    if len(features) < 2:
        return Figure("near_duplicate_rate", float("nan"), float("nan"), float("nan"),
                      len(features), group, "not computed: needs at least 2 samples")
    rate, pairs = near_duplicate_rate(features, threshold)
    lo, hi = wilson_interval(len(pairs), len(features), confidence)
    name = names.__getitem__ if names is not None else str
    top = ", ".join(f"{name(i)}~{name(j)} ({s:.4f})" for i, j, s in pairs[:3]) or "none"
    return Figure("near_duplicate_rate", rate, lo, hi, len(features), group,
                  f"nearest other sample at cosine similarity >= {threshold}; Wilson interval "
                  f"(flags come in pairs: slightly narrow); top: {top}")


def per_class(figure_fn: Callable[..., Figure], features: np.ndarray, labels: np.ndarray,
              **kwargs) -> list[Figure]:
    """``figure_fn(features_of_class, group=str(label), **kwargs)`` for each label, sorted.

    ``labels`` (N,) class of each feature row, e.g. ``per_class(mean_pairwise_distance_figure,
    feats, classes)``. Every class gets a row; small classes get NaN or wide intervals, and the
    caller decides which group sizes to show.
    """
    features, labels = np.asarray(features), np.asarray(labels)
    if len(labels) != len(features):
        raise ValueError(f"{len(labels)} labels for {len(features)} feature rows")
    return [figure_fn(features[labels == label], group=str(label), **kwargs)
            for label in sorted(set(labels.tolist()))]


# Metrics (``evaluation.registry``) -----------------------------------------------------------------

def score_diversity(inputs: MetricInputs) -> list[Figure]:
    """Vendi score and mean pairwise distance of the set and of each group of ``min_group_size``
    or more (N must match to compare)."""
    spec = inputs.spec
    feats = inputs.arrays()["features"]
    rounds = min(spec.bootstrap_rounds, 50)
    out = []
    for group, members in inputs.targets(spec.min_group_size):
        out.append(vendi_figure(feats[members], group, rounds, spec.confidence, spec.seed))
        out.append(mean_pairwise_distance_figure(feats[members], group, rounds, spec.confidence,
                                                 spec.seed))
    return out


def score_density_coverage(inputs: MetricInputs) -> list[Figure]:
    """Density and coverage of the set against the reference (k = 5)."""
    spec, real = inputs.spec, inputs.reference.features
    if len(real) <= 5:
        return []
    return density_coverage_figures(real, inputs.arrays()["features"], 5,
                                    min(spec.bootstrap_rounds, 200), spec.confidence, spec.seed)
