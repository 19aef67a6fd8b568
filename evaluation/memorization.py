"""Memorization: how many synthetic samples are near-copies of training samples.

A synthetic sample counts as memorized when its nearest training neighbour, by cosine distance on
L2-normalised features, is closer than a threshold, the nearest-neighbour copy test of Carlini et
al. 2023 ("Extracting training data from diffusion models") and Somepalli et al. 2023 ("Diffusion
art or digital forgery?"). The threshold is not a magic number: ``calibrate_threshold`` takes it
from real-vs-real distances, since a held-out real image is never a copy of a training image, so
only ``quantile`` of held-out real images fall below it (the test's false-positive rate).
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from evaluation.diversity import near_duplicate_figure
from evaluation.figures import Figure
from evaluation.inputs import MetricInputs
from evaluation.neighbours import nearest_neighbours
from evaluation.sets import SampleSet
from evaluation.stats import wilson_interval


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
    at ``confidence``), ``count``, ``n``, ``threshold``, ``confidence``; ``flagged``: the synthetic
    indices closer than ``threshold``, ascending; ``examples``: the ``top_k`` closest pairs as
    ``(synthetic index, train index, distance)``, closest first, flagged or not (the report shows
    what "closest" looks like even when nothing is flagged); and ``distances`` / ``indices`` (N,)
    of every sample's nearest training neighbour, for a histogram.
    """
    distances, indices = nearest_neighbours(synthetic, train_bank)
    flagged = np.flatnonzero(distances < threshold)
    count, n = len(flagged), len(distances)
    lo, hi = wilson_interval(count, n, confidence)
    order = np.argsort(distances, kind="stable")[:top_k]
    return {"rate": count / n if n else float("nan"), "ci_low": lo, "ci_high": hi, "count": count,
            "n": n, "threshold": float(threshold), "confidence": confidence,
            "flagged": [int(i) for i in flagged],
            "examples": [(int(i), int(indices[i]), float(distances[i])) for i in order],
            "distances": distances, "indices": indices}


NAMED = 20
"""How many flagged samples a memorization_rate row names (the rest are counted)."""


def memorization_figure(result: dict, group: str = "all", names: Sequence[str] | None = None,
                        reference_names: Sequence[str] | None = None) -> Figure:
    """The ``memorization_rate`` row of metrics.csv from a ``memorization`` result; its details
    name the flagged samples and the closest pairs by ``names`` (one per synthetic row, e.g. the
    sample ids of ``sample_names``) and ``reference_names`` (one per bank row); by index when
    None."""
    def name(i: int) -> str:
        return str(names[i]) if names is not None else str(i)

    def ref(j: int) -> str:
        return str(reference_names[j]) if reference_names is not None else str(j)

    flagged = [name(i) for i in result["flagged"]]
    listed = ", ".join(flagged[:NAMED]) + (f" and {len(flagged) - NAMED} more"
                                            if len(flagged) > NAMED else "")
    closest = ", ".join(f"{name(s)} -> {ref(t)} ({d:.4f})" for s, t, d in result["examples"][:3])
    details = (f"nearest training neighbour at cosine distance < {result['threshold']:.4f}; "
               f"{result['count']} of {result['n']} flagged" + (f": {listed}" if flagged else "")
               + f"; Wilson interval; closest generated -> reference: {closest}")
    return Figure("memorization_rate", result["rate"], result["ci_low"], result["ci_high"],
                  result["n"], group, details)


def sample_names(sample_set: SampleSet) -> list[str]:
    """How the report and metrics.csv name each file of ``sample_set``: a synthmill sample by its
    manifest id (``#58``; its files are named by the id, ``augment.core.shards.sample_stem``),
    any other file by its file name."""
    if sample_set.kind == "synthmill":
        return [f"#{int(Path(f).stem)}" for f in sample_set.files]
    return [Path(f).name for f in sample_set.files]


def memorization_record(result: dict, names: Sequence[str], files: Sequence[str | Path],
                        bank_files: Sequence[str | Path]) -> dict:
    """What a memorization result leaves for the report (memorization.json): the threshold, the
    flagged samples by ``names`` and the closest pairs with both files, the reference side named
    by its file name. ``result``: ``memorization``'s, over samples ``names``/``files`` and the
    bank ``bank_files``."""
    return {"threshold": result["threshold"], "n": result["n"],
            "flagged": [names[i] for i in result["flagged"]],
            "pairs": [{"sample": names[i], "file": str(files[i]),
                       "reference": Path(bank_files[j]).name, "reference_file": str(bank_files[j]),
                       "distance": d} for i, j, d in result["examples"]]}


def score_memorization(inputs: MetricInputs) -> list[Figure]:
    """Memorization and near duplicates, with a line calibrated on real-vs-real distances: half of
    the reference is the bank, the other half the held-out real set (a real image is never a copy
    of another, so closer than that is suspect). Generated samples are named by ``sample_names``,
    reference files by their file name, the same in metrics.csv and in what it leaves for the
    report (``extras["memorization"]``, when the reference is a set): the threshold, the flagged
    samples and the closest pairs with their files."""
    spec, ref = inputs.spec, inputs.reference
    if len(ref.features) < 2 * spec.min_group_size:
        return []
    feats = inputs.arrays()["features"]
    half = len(ref.features) // 2
    held_out, bank = ref.features[:half], ref.features[half:]
    threshold = calibrate_threshold(held_out, bank, spec.memorization_quantile)
    result = memorization(feats, bank, threshold, top_k=16, confidence=spec.confidence)
    every = sample_names(inputs.sample_set)
    names = [every[r] for r in inputs.features.rows]
    files = [inputs.sample_set.files[r] for r in inputs.features.rows]
    bank_files = ref.files[half:] if ref.files else None
    bank_names = [Path(f).name for f in bank_files] if bank_files else None
    if bank_files:
        inputs.extras["memorization"] = memorization_record(result, names, files, bank_files)
    figure = memorization_figure(result, names=names, reference_names=bank_names)
    figure.details += (f"; bank = second half of the reference ({len(bank)}), line calibrated "
                       f"at the {spec.memorization_quantile:g} quantile of real-vs-real distances")
    near = near_duplicate_figure(feats, 1.0 - threshold, spec.confidence, names=names)
    near.details += "; same calibrated line, within the synthetic set"
    return [figure, near]
