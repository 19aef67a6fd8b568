"""The metric registry: a new metric is one function plus one entry; every figure is declared once,
by the metric that writes it; names in configs are checked against the registry."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from augment.config import ImageJob, VerifySpec
from augment.config.image import ShapesLayoutSpec, ShapesWorldSpec
from augment.core.shards import generate_dataset
from augment.image.layouts import render_scene, sample_layout
from evaluation.bias import STATISTICS
from evaluation.compare import comparison_table, higher_is_better
from evaluation.config import EvalSpec, ReportSpec
from evaluation.evaluate import evaluate_dataset
from evaluation.figures import Figure, FigureSpec
from evaluation.inputs import MetricInputs
from evaluation.registry import AUDITS, METRICS, Metric, figure_spec, selectable
from evaluation.stats import mean_ci
from evaluation.suite import evaluate_one, report


# -- the whole of a new metric: its settings, its compute function, its entry ---------------------

class FeatureNormSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    rounds: int = Field(50, ge=1, description="Bootstrap rounds of the interval.")


def score_feature_norm(inputs: MetricInputs) -> list[Figure]:
    """Mean L2 norm of the fidelity features, with a bootstrap interval."""
    norms = np.linalg.norm(inputs.arrays()["features"], axis=1)
    rounds = inputs.settings.rounds
    mean, lo, hi = mean_ci(norms, rounds, inputs.spec.confidence, inputs.spec.seed)
    return [Figure("feature_norm", mean, lo, hi, len(norms), "all", f"bootstrap, {rounds} rounds")]


FEATURE_NORM = Metric("feature_norm", compute=score_feature_norm, settings=FeatureNormSettings,
                      default=False, figures=(FigureSpec("feature_norm", True, "norm"),))


@pytest.fixture
def feature_norm():
    METRICS.add(FEATURE_NORM)
    yield FEATURE_NORM
    METRICS.remove(FEATURE_NORM.name)


# -- sets -------------------------------------------------------------------------------------------

def write_scenes(folder, seed, n, size=64):
    folder.mkdir(parents=True)
    for i in range(n):
        image = Image.fromarray(render_scene(sample_layout(ShapesLayoutSpec(), seed, i)))
        image.resize((size, size)).save(folder / f"{i:04d}.png")
    return folder


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("folders")
    return {"ref": write_scenes(root / "ref", 1, 40), "small": write_scenes(root / "small", 2, 40),
            "large": write_scenes(root / "large", 3, 40, size=96)}


@pytest.fixture(scope="module")
def datasets(tmp_path_factory):
    """A synthmill dataset with layouts and captions, and a reference dataset (shapes world)."""
    root = tmp_path_factory.mktemp("datasets")
    out = {}
    for name, seed in (("gen", 2), ("ref", 1)):
        job = ImageJob(name=name, num_samples=48, seed=seed, shard_size=48,
                       model=ShapesWorldSpec(backend="shapes-world"),
                       verify=VerifySpec(enabled=False))
        out[name] = generate_dataset(job, root)[0]
    return out


def spec_for(tmp_path, **kw):
    return EvalSpec(**{"cache_dir": str(tmp_path / "cache"), "bootstrap_rounds": 10,
                       "kid_subset_size": 16, "kid_subsets": 5, "min_group_size": 8, **kw})


# -- tests ------------------------------------------------------------------------------------------

def test_a_new_metric_is_one_function_and_one_entry(feature_norm, folders, tmp_path):
    spec = spec_for(tmp_path, metrics=["is", "feature_norm"],
                    metric_settings={"feature_norm": {"rounds": 20}})
    parts = [evaluate_one(folders[k], spec, folders["ref"], tmp_path / k) for k in ("small", "large")]
    table = pd.concat([pd.read_csv(p) for p in parts], ignore_index=True)
    rows = table[table.metric == "feature_norm"].set_index("dataset")
    assert list(rows.index) == ["small", "large"] and (rows.n == 40).all()
    assert (rows.ci_low <= rows.value).all() and (rows.value <= rows.ci_high).all()
    assert set(rows.details) == {"bootstrap, 20 rounds"}  # its own settings reached it
    # the comparison marks the higher mean norm best: the direction its entry declares
    best = rows.value.idxmax()
    cells = comparison_table(table)["feature_norm"]
    assert cells[best].mark == "best" and cells[rows.value.idxmin()].mark in ("", "tie")
    summary = report(parts, [folders["small"], folders["large"]], tmp_path / "report",
                     ReportSpec(samples_per_class=0))["summary"].read_text()
    assert "feature_norm (higher better)" in summary


def test_a_removed_metric_is_unknown_again(feature_norm, tmp_path):
    assert "feature_norm" in selectable()
    METRICS.remove("feature_norm")
    try:
        assert figure_spec("feature_norm") is None and higher_is_better("feature_norm") is None
        with pytest.raises(ValidationError, match="feature_norm"):
            spec_for(tmp_path, metrics=["feature_norm"])
    finally:
        METRICS.add(FEATURE_NORM)


def test_metric_settings_go_through_the_metric_model(feature_norm, tmp_path):
    assert spec_for(tmp_path, metric_settings={"feature_norm": {}}).metric_settings == {
        "feature_norm": {"rounds": 50}}
    with pytest.raises(ValidationError, match="rounds"):
        spec_for(tmp_path, metric_settings={"feature_norm": {"rounds": 0}})
    with pytest.raises(ValidationError, match="'fid' has no settings of its own"):
        spec_for(tmp_path, metric_settings={"fid": {}})


def test_an_unknown_metric_names_itself_and_the_allowed_ones(tmp_path):
    with pytest.raises(ValidationError, match=r"unknown metric \['fdi'\]; allowed: .*'fid_infinity'"):
        spec_for(tmp_path, metrics=["fid", "fdi"])
    with pytest.raises(ValidationError, match="unknown metric"):
        spec_for(tmp_path, metrics=["unreadable"])  # always written, never chosen


def test_a_figure_name_is_declared_once():
    with pytest.raises(ValueError, match="'fid' is already declared by 'fid'"):
        METRICS.add(Metric("fid_again", compute=score_feature_norm,
                           figures=(FigureSpec("fid", False),)))
    assert "fid_again" not in METRICS and figure_spec("fid").higher_is_better is False


def test_bias_audit_figures_are_declared():
    assert {f.name for f in AUDITS.get("bias").figures} == {f"bias_{k}" for k in STATISTICS}


def test_each_builtin_metric_writes_only_the_figures_it_declares(datasets, tmp_path,
                                                                 written_figures):
    table = evaluate_dataset(datasets["gen"], spec_for(tmp_path, metrics=list(selectable())),
                             datasets["ref"]).figures
    image_metrics = [m for m in METRICS if "audio" not in m.needs]  # audio ones: tests/evaluation/audio
    assert set(written_figures) == {m.name for m in image_metrics}  # each ran on a shapes-world dataset
    for metric in image_metrics:
        assert written_figures[metric.name] and written_figures[metric.name] <= {f.name for f in metric.figures}
    assert set(table.metric) == set().union(*written_figures.values())


def test_a_metric_whose_needs_are_not_met_is_skipped(folders, tmp_path, caplog):
    with caplog.at_level(logging.INFO, logger="evaluation.evaluate"):
        table = evaluate_dataset(folders["small"], spec_for(tmp_path, metrics=["is", "layout", "fid"])
                                 ).figures  # no layouts (no checker maps) and no reference
    assert set(table.metric) == {"inception_score", "unreadable_images"}
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("fid (needs reference: set evaluate.reference" in m for m in warned), warned
