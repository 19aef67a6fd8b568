"""Audio evaluation end to end: CLAP wiring on a tiny random CLAP built offline, the audio
settings' errors, and `synthmill evaluate` on a small soundscape dataset against a small
tones-world reference, writing audio rows to metrics.csv."""

from __future__ import annotations

import logging

import pandas as pd
import pytest
from pydantic import ValidationError
from typer.testing import CliRunner

from augment.testing.tiny_audio import save_tiny_clap
from evaluation.config import EvalSpec
from evaluation.evaluate import evaluate_dataset
from evaluation.registry import METRICS, selectable
from flows.cli import app


@pytest.fixture(scope="module")
def tiny_clap(tmp_path_factory):
    return save_tiny_clap(tmp_path_factory.mktemp("clap") / "clap")


def test_each_audio_metric_writes_only_the_figures_it_declares(tones_scapes, tones_reference,
                                                               tiny_clap, audio_spec,
                                                               written_figures):
    spec = audio_spec(metrics=list(selectable()), clap_model=str(tiny_clap))
    table = evaluate_dataset(tones_scapes, spec, reference=tones_reference).figures
    audio_metrics = [m for m in METRICS if "image" not in m.needs]
    assert set(written_figures) == {m.name for m in audio_metrics}  # image metrics skipped
    for metric in audio_metrics:
        assert written_figures[metric.name] and written_figures[metric.name] <= {f.name for f in metric.figures}
    assert set(table.metric) == set().union(*written_figures.values())


def test_clap_alignment_and_clap_fidelity_on_a_tiny_random_clap(tones_scapes, tones_reference,
                                                                 tiny_clap, audio_spec):
    spec = audio_spec(metrics=["clap", "fad"], audio_extractor="clap", clap_model=str(tiny_clap),
                      per_group=False)
    table = evaluate_dataset(tones_scapes, spec, reference=tones_reference).figures
    rows = table.set_index("metric")
    assert -1 <= rows.loc["clap_score", "value"] <= 1 and rows.loc["clap_score", "n"] == 24
    accuracy = table[(table.metric == "clap_zero_shot_accuracy") & (table.group == "all")].iloc[0]
    assert 0 <= accuracy.value <= 1 and accuracy.n > 24  # one row per labelled event
    assert rows.loc["fad", "extractor"] == "clap-clap" and rows.loc["fad", "value"] >= 0


def test_without_a_clap_model_clap_is_skipped_quietly(tones_scapes, tones_reference, audio_spec,
                                                    caplog):
    with caplog.at_level(logging.INFO, logger="evaluation.evaluate"):
        table = evaluate_dataset(tones_scapes, audio_spec(), reference=tones_reference).figures
    assert "fad" in set(table.metric) and "clap_score" not in set(table.metric)
    said = {r.levelno for r in caplog.records if "skipped clap" in r.getMessage()}
    assert said == {logging.INFO}  # the embedded default warns about nothing it cannot have


def test_audio_settings_name_the_field():
    with pytest.raises(ValidationError, match="clap_model"):
        EvalSpec(audio_extractor="clap")
    with pytest.raises(ValidationError, match="audio_extractor"):
        EvalSpec(audio_extractor="vggish")
    with pytest.raises(ValidationError, match="event_hop"):
        EvalSpec(event_window=0.3, event_hop=0.5)
    assert EvalSpec(audio_reference="wavs").reference_for("audio") == "wavs"
    assert EvalSpec(reference="pngs").reference_for("image") == "pngs"


def test_synthmill_evaluate_writes_audio_rows(prefect_harness, tones_scapes, tones_reference,
                                              tmp_path):
    out = tmp_path / "report"
    result = CliRunner().invoke(app, [
        "evaluate", str(tones_scapes), "--reference", str(tones_reference), "--out", str(out),
        "--set", f"cache_dir={tmp_path / 'cache'}", "--set", "bootstrap_rounds=20",
        "--set", "kid_subset_size=16", "--set", "min_group_size=4"])
    assert result.exit_code == 0, result.output
    metrics = pd.read_csv(out / "metrics.csv")
    found = set(metrics.metric)
    assert {"fad", "audio_kid", "audio_is", "label_consistency", "event_f1", "precision",
            "vendi", "unreadable_audio"} <= found
    assert not {"fid", "kid", "inception_score"} & found
    fad = metrics[(metrics.metric == "fad") & (metrics.group == "all")].iloc[0]
    assert fad.n == 24 and fad.ci_low <= fad.value <= fad.ci_high and fad.reference
    assert (out / "report.html").exists()
