"""The main job (generate -> evaluate -> audit -> report) end to end under a Prefect test server, on
the embedded models, with a known answer: the planted circle -> red skew must be found."""

from __future__ import annotations

import html.parser

import pandas as pd
import pytest

from augment.config.base import validate
from evaluation.config import EvalSpec, ReportSpec
from flows.config import RunConfig
from augment.image.dataset import SynthDataset


@pytest.fixture(scope="module")
def pipeline_run(prefect_harness, tmp_path_factory):
    from flows.pipeline import pipeline

    out = tmp_path_factory.mktemp("pipeline")
    sampler = dict(scheduler="dpmsolver++", steps=10, guidance=3.0, batch_size=16)
    config = validate(RunConfig, dict(
        out=str(out / "datasets"),
        jobs=[dict(name="main", num_samples=16, seed=0, shard_size=8, sampler=sampler,
                   layout=dict(objects_per_image=(1, 3))),
              dict(name="noguidance", extends="main", sampler=dict(guidance=1.0)),
              dict(name="real", role="reference", num_samples=48, seed=1000, shard_size=48,
                   model=dict(backend="shapes-world"), sampler=dict(batch_size=48),
                   verify=dict(enabled=False)),
              dict(name="main-audit", role="audit", extends="main", num_samples=128, seed=7,
                   layout=dict(objects_per_image=(2, 3), colour_unspecified=1.0)),
              dict(name="sounds", modality="audio", num_samples=4, shard_size=4,
                   model=dict(backend="tones-world"), soundscape=dict(duration=2.0)),
              dict(name="sounds-real", role="reference", extends="sounds", num_samples=8,
                   shard_size=8, seed=1000)],
        audits=[dict(dataset="main-audit")],
        evaluate=EvalSpec(cache_dir=str(out / "cache"), bootstrap_rounds=20, kid_subset_size=16,
                          min_group_size=4, reports_dir=str(out / "reports")),
        report=ReportSpec(title="pipeline <test>", samples_per_class=1, memorization_examples=1)),
        "pipeline test")
    report_dir = out / "reports" / "run"
    result = pipeline(config, str(report_dir), {"run id": "run"})
    return config, report_dir, result


def test_pipeline_generates_every_dataset_and_writes_the_report(pipeline_run):
    config, report_dir, result = pipeline_run
    names = sorted(p["path"].rsplit("/", 1)[-1] for p in result["generate"])
    assert names == sorted(["main", "noguidance", "real", "main-audit", "sounds", "sounds-real"])
    assert all(s["counts"]["samples"] > 0 for s in result["generate"])
    metrics = pd.read_csv(report_dir / "metrics.csv")
    # the audio job is scored against the audio reference job of the run, the images unaffected
    sounds = metrics[metrics.dataset == "sounds"]
    fad = sounds[(sounds.metric == "fad") & (sounds.group == "all")]
    assert len(fad) == 1 and fad.reference.iloc[0].endswith("sounds-real") and fad.n.iloc[0] == 4
    assert {"audio_is", "event_f1", "label_consistency"} <= set(sounds.metric)
    assert not {"fid", "kid"} & set(sounds.metric) and "fad" not in set(metrics.metric[
        metrics.dataset != "sounds"])
    # both compared datasets have fidelity figures against the real reference, with N and a CI
    for dataset in ("main", "noguidance"):
        fid = metrics[(metrics.dataset == dataset) & (metrics.metric == "fid") & (metrics.group == "all")]
        kept = len(SynthDataset(f"{config.out}/{dataset}"))  # samples that passed verification
        assert len(fid) == 1 and fid.n.iloc[0] == kept > 0
        assert fid.ci_low.iloc[0] <= fid.value.iloc[0] <= fid.ci_high.iloc[0]
    html_text = (report_dir / "report.html").read_text()
    html.parser.HTMLParser().feed(html_text)  # parses
    assert "pipeline &lt;test&gt;" in html_text and "http://" not in html_text
    assert "https://" not in html_text
    assert (report_dir / "summary.md").exists()


def test_pipeline_audit_finds_the_planted_circle_skew(pipeline_run):
    _, report_dir, _ = pipeline_run
    metrics = pd.read_csv(report_dir / "metrics.csv")
    audit = metrics[metrics.metric == "bias_max_abs_deviation"]
    assert not audit.empty
    circle = audit[audit.group.str.contains("circle")]
    assert len(circle) == 1 and "FLAGGED" in circle.details.iloc[0]
    assert "most over-represented: red" in circle.details.iloc[0]
    distribution = pd.concat(pd.read_csv(p) for p in report_dir.glob("*/distribution.csv"))
    assert not distribution.empty
