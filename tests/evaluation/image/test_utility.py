"""``synthmill utility``: the protocol's known answers (extra real data helps, noise does not, a
seed repeats), the box AP scorer against known predictions, the interval against a direct
computation, the leakage guard, and the flow and CLI end to end."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from augment.image.world import CLASSES
from evaluation.config import ReportSpec, UtilitySpec
from evaluation.image.utility import (SegSet, Sets, check_leakage, coco_box_ap, real_scenes,
                                      run_one, runs)
from evaluation.utility import summarize, t_interval

SIDE = 32
K = len(CLASSES) + 1  # background and the shape classes
FAST = dict(steps=200, batch_size=16, widths=(16, 32, 32), seeds=3, learning_rate=1e-2)


@pytest.fixture(scope="module")
def worlds():
    return {"real": real_scenes(1, 200, SIDE, "real"), "test": real_scenes(2, 120, SIDE, "test")}


def _noise(n: int, seed: int) -> SegSet:
    """'Synthetic' images of pure noise with random labels (blocks of a random class)."""
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (n, 3, SIDE, SIDE), dtype=np.uint8)
    semantic = np.kron(rng.integers(0, K, (n, 4, 4)), np.ones((8, 8), int)).astype(np.uint8)
    instance = semantic.astype(np.int32)
    return SegSet("noise", images, semantic, instance, [f"noise {i}" for i in range(n)], "noise")


def _study(spec: UtilitySpec, sets: Sets) -> pd.DataFrame:
    results = [run_one(arm, budget, seed, spec, sets) for arm, budget, seed in runs(spec, sets)]
    return summarize(results, spec, "synthetic", "test")


def _gain(table: pd.DataFrame, metric: str, group: str) -> pd.Series:
    return table[(table.metric == metric) & (table.group == group)].iloc[0]


def test_extra_real_data_shows_a_significant_gain(worlds):
    spec = UtilitySpec(budgets=[8], arms=["real", "more-real"], **{**FAST, "seeds": 5})
    sets = Sets(worlds["real"], worlds["real"].take(np.arange(150, 200)), worlds["test"])
    table = _study(spec, sets)
    gain = _gain(table, "utility_gain_miou", "more-real@8")
    assert gain.ci_low > 0 and gain.details == "gain over real@8", gain.to_dict()
    assert gain.n == 5


def test_noise_with_random_labels_shows_no_significant_gain(worlds):
    spec = UtilitySpec(budgets=[30], arms=["real", "real+synthetic"], **FAST)
    table = _study(spec, Sets(worlds["real"], _noise(60, 0), worlds["test"]))
    for metric in ("utility_gain_miou", "utility_gain_box_ap"):
        gain = _gain(table, metric, "real+synthetic@30")
        assert gain.ci_low <= 0 and gain.details in ("tie over real@30", "loss over real@30")
    headline = table[table.group == "all"]
    assert list(headline.metric) == ["utility_gain_miou"]  # the comparison table's column


def test_a_run_repeats_exactly_with_its_seed(worlds):
    spec = UtilitySpec(budgets=[20], arms=["real"], **{**FAST, "steps": 20})
    sets = Sets(worlds["real"], worlds["real"].take(np.arange(10)), worlds["test"])
    first, again = (run_one("real", 20, 4, spec, sets) for _ in range(2))
    other = run_one("real", 20, 5, spec, sets)
    assert first == again
    assert first["utility_miou"] != other["utility_miou"]


def _separated(n: int = 12) -> SegSet:
    """Images with 2-3 rectangles apart from each other, of known classes."""
    rng = np.random.default_rng(3)
    semantic = np.zeros((n, SIDE, SIDE), np.uint8)
    instance = np.zeros((n, SIDE, SIDE), np.int32)
    for i in range(n):
        for k, (y, x) in enumerate([(2, 2), (18, 4), (6, 20)][:int(rng.integers(2, 4))]):
            h, w = (int(v) for v in rng.integers(4, 10, 2))
            semantic[i, y:y + h, x:x + w] = int(rng.integers(1, K))
            instance[i, y:y + h, x:x + w] = k + 1
    return SegSet("boxes", np.zeros((n, 3, SIDE, SIDE), np.uint8), semantic, instance,
                  [str(i) for i in range(n)], "hand-made")


def test_box_ap_is_one_for_a_perfect_prediction_and_falls_for_a_wrong_one():
    test = _separated()
    perfect = np.eye(K, dtype=np.float32)[test.semantic].transpose(0, 3, 1, 2)  # (N, K, H, W)
    assert coco_box_ap(test, perfect) == pytest.approx((1.0, 1.0))
    shifted, _ = coco_box_ap(test, np.roll(perfect, 3, axis=3))  # boxes 3 px off
    assert 0 < shifted < 0.8
    wrong_class = np.eye(K, dtype=np.float32)[np.where(test.semantic > 0, 1 + test.semantic % (K - 1), 0)]
    assert coco_box_ap(test, wrong_class.transpose(0, 3, 1, 2)) == (0.0, 0.0)
    nothing = np.eye(K, dtype=np.float32)[np.zeros_like(test.semantic)].transpose(0, 3, 1, 2)
    assert coco_box_ap(test, nothing) == (0.0, 0.0)


def test_the_interval_is_the_student_t_interval_of_the_mean():
    values = np.array([0.61, 0.64, 0.58, 0.66])
    mean, low, high = t_interval(values, 0.95)
    half = stats.t.ppf(0.975, 3) * values.std(ddof=1) / np.sqrt(4)
    assert mean == pytest.approx(values.mean())
    assert (low, high) == pytest.approx((values.mean() - half, values.mean() + half))
    assert low < mean < high


def test_a_synthetic_set_holding_test_images_is_refused_naming_them(worlds):
    test = worlds["test"]
    leaky = worlds["real"].take(np.arange(30))
    leaky.images = leaky.images.copy()
    leaky.images[3] = test.images[7]  # an exact copy
    noisy = test.images[11].astype(int) + np.random.default_rng(0).integers(-3, 4, (3, SIDE, SIDE))
    leaky.images[9] = noisy.clip(0, 255).astype(np.uint8)  # a re-encoded copy
    spec = UtilitySpec()
    with pytest.raises(ValueError) as err:
        check_leakage(test, [leaky], spec)
    message = str(err.value)
    assert message.startswith("leakage: 2 image(s) of real")
    assert "scene 3 = test scene 7" in message and "scene 9 = test scene 11" in message
    assert "1 exact" in message
    # other scenes of the same world pass, though some are as close as copies in feature space:
    # the pixel check is what tells them apart
    clean = check_leakage(test, [worlds["real"]], spec)
    assert clean["closest"]["real"] < clean["threshold"]


def test_budgets_beyond_the_real_pool_are_refused(worlds):
    sets = Sets(worlds["real"].take(np.arange(20)), worlds["real"].take(np.arange(5)),
                worlds["test"])
    with pytest.raises(ValueError, match="budgets: 50 real images asked"):
        runs(UtilitySpec(budgets=[50]), sets)
    planned = runs(UtilitySpec(budgets=[10, 18], seeds=2), sets)
    assert ("more-real", 10, 0) in planned and ("more-real", 18, 0) not in planned  # 18 + 5 > 20
    assert [r for r in planned if r[0] == "synthetic"] == [("synthetic", 0, 0), ("synthetic", 0, 1)]


def test_the_command_writes_figures_protocol_and_report(prefect_harness, tmp_path):
    from typer.testing import CliRunner

    from augment.config.image import ImageJob
    from augment.core.shards import generate_dataset
    from flows.cli import app

    job = ImageJob.model_validate({"name": "synth", "num_samples": 24, "seed": 9,
                                   "model": {"backend": "shapes-world"},
                                   "layout": {"height": SIDE, "width": SIDE},
                                   "verify": {"enabled": False}})
    root, _ = generate_dataset(job, tmp_path / "datasets")
    result = CliRunner().invoke(app, [
        "utility", str(root), "--out", str(tmp_path / "report"), "--set", "budgets=[10]",
        "--set", "seeds=2", "--set", "steps=20", "--set", "batch_size=8",
        "--set", "widths=[8,16]", "--set", "test_size=30"])
    assert result.exit_code == 0, result.output
    assert "real+synthetic@10: miou" in result.output
    metrics = pd.read_csv(tmp_path / "report" / "metrics.csv")
    groups = set(metrics[metrics.metric == "utility_miou"].group)
    assert groups == {"real@10", "real+synthetic@10", "synthetic@0", "more-real@10"}
    assert (metrics[metrics.metric == "utility_miou"].n == 2).all()
    about = json.loads((tmp_path / "report" / "synth" / "utility.json").read_text())
    assert about["spec"]["steps"] == 20 and len(about["runs"]) == 8
    assert about["sets"]["synthetic"]["size"] == 24 and len(about["sets"]["test"]["sha256"]) == 64
    html = (tmp_path / "report" / "report.html").read_text()
    assert "does the synthetic set help?" in html
    assert "over real@10" in html  # each gain's verdict
    # a second generator's study merged into one report: the utility column of the comparison
    from evaluation.suite import report

    other = tmp_path / "other"
    other.mkdir()
    renamed = metrics.assign(dataset="other-generator")
    renamed.loc[renamed.group == "all", "value"] += 0.5
    renamed.to_csv(other / "metrics.csv", index=False)
    merged = report([tmp_path / "report" / "metrics.csv", other / "metrics.csv"], [],
                    tmp_path / "merged", ReportSpec())
    html = Path(merged["html"]).read_text()
    assert "utility_gain_miou" in html and "other-generator" in html
