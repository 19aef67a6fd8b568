"""Memorization: planted copies are found and named by sample id, independent draws are not,
calibration holds its rate."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from evaluation.config import EvalSpec
from evaluation.features import SetFeatures
from evaluation.image.sets import ImageSet
from evaluation.inputs import MetricInputs
from evaluation.memorization import (calibrate_threshold, memorization, memorization_figure,
                                     sample_names, score_memorization)
from evaluation.neighbours import nearest_neighbours
from evaluation.reference import Reference
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


def planted_inputs(root) -> tuple[MetricInputs, dict[str, str]]:
    """A generated set of 40 synthmill samples (manifest ids 1, 4, 7, ...; the 8th file
    unreadable) scored against a reference of 400 real samples, five of the generated samples
    exact copies of reference samples in the bank (its second half).

    Features are 8-dimensional: 40 generated samples lie much further from one another than from
    the 200-sample bank, so a line calibrated on generated-vs-generated distances would flag many
    samples that copy nothing. Returns the inputs and sample id -> the reference file it copies.
    """
    rng = np.random.default_rng(0)
    reference = rng.normal(size=(400, 8))
    ids = [1 + 3 * k for k in range(40)]
    files = [root / "images" / f"{i:06d}.png" for i in ids]
    rows = np.array([r for r in range(40) if r != 7])  # (39,) readable rows
    features = rng.normal(size=(39, 8))
    ref_files = [f"/ref/images/{j:06d}.png" for j in range(400)]
    copies = {3: 205, 11: 217, 20: 260, 29: 261, 37: 350}  # position among readable rows -> ref
    planted = {}
    for position, j in copies.items():
        features[position] = reference[j]
        planted[f"#{ids[rows[position]]}"] = Path(ref_files[j]).name
    sample_set = ImageSet("gen", root, files, "synthmill")
    inputs = MetricInputs(
        spec=EvalSpec(min_group_size=16), sample_set=sample_set,
        features=SetFeatures("key", rows, {"x": {"features": features}}),
        extractors={"fidelity": "x"}, groups={},
        reference=Reference("ref", "x", "w", reference, files=ref_files))
    return inputs, planted


def test_planted_reference_copies_are_flagged_and_named_by_sample_id(tmp_path):
    inputs, planted = planted_inputs(tmp_path)
    rate = score_memorization(inputs)[0]
    assert rate.metric == "memorization_rate" and rate.n == 39
    assert rate.value == pytest.approx(5 / 39) and rate.value > 0
    left = inputs.extras["memorization"]
    # exactly the planted samples, by manifest id (not by position among the kept/readable rows)
    assert left["flagged"] == sorted(planted, key=lambda name: int(name[1:]))
    assert f"5 of 39 flagged: {', '.join(left['flagged'])};" in rate.details
    closest = {p["sample"]: p["reference"] for p in left["pairs"][:5]}
    assert closest == planted
    for pair in left["pairs"][:5]:
        assert Path(pair["file"]).stem == f"{int(pair['sample'][1:]):06d}"
        assert Path(pair["reference_file"]).name == pair["reference"]
    # metrics.csv names the same pairs as the report: id -> reference file
    first = left["pairs"][0]
    assert f"{first['sample']} -> {first['reference']}" in rate.details


def test_sample_names_are_manifest_ids_for_datasets_and_file_names_otherwise(tmp_path):
    files = [tmp_path / "images" / "000058.png", tmp_path / "images" / "001234.png"]
    assert sample_names(ImageSet("d", tmp_path, files, "synthmill")) == ["#58", "#1234"]
    assert sample_names(ImageSet("f", tmp_path, files, "folder")) == ["000058.png", "001234.png"]
