"""The comparison table: direction per metric, best and tie marks, descriptors, throughput."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from evaluation.compare import (Cell, comparison_table, higher_is_better, mark_column,
                                run_descriptors, throughput)

NAN = float("nan")


def rows(metric: str, figures: dict[str, tuple[float, float, float]], group: str = "all",
         n: int = 100) -> list[dict]:
    return [{"dataset": d, "reference": "ref", "metric": metric, "value": v, "ci_low": lo,
             "ci_high": hi, "n": n, "extractor": "ext", "group": group, "details": ""}
            for d, (v, lo, hi) in figures.items()]


def marks(table: pd.DataFrame, column: str) -> dict[str, str]:
    return {d: (c.mark if c is not None else None) for d, c in table[column].items()}


@pytest.mark.parametrize("metric, higher", [
    ("fid", False), ("fid_infinity", False), ("kid", False), ("memorization_rate", False),
    ("near_duplicate_rate", False), ("unreadable_images", False), ("bias_kl_divergence", False),
    ("bias_max_abs_deviation", False), ("bias_max_min_ratio", False),
    ("bias_normalised_entropy", True), ("precision", True), ("recall", True),
    ("inception_score", True), ("clip_score", True), ("clip_score_100", True),
    ("clip_crop_accuracy", True), ("layout_miou", True), ("layout_iou", True),
    ("layout_colour_accuracy", True), ("layout_box_recall_iou50", True), ("vendi", True),
    ("mean_pairwise_distance", True), ("coverage", True), ("density", True),
    ("some_new_metric", None)])
def test_direction_of_each_metric_is_its_declaration(metric, higher):
    assert higher_is_better(metric) is higher


def test_an_undeclared_figure_gets_no_marks():
    metrics = pd.DataFrame(rows("some_new_metric", {"A": (1.0, 0.9, 1.1), "B": (2.0, 1.9, 2.1)}))
    assert marks(comparison_table(metrics), "some_new_metric") == {"A": "", "B": ""}


def test_lower_is_better_marks_best_and_overlapping_tie():
    metrics = pd.DataFrame(rows("fid", {"A": (10, 9, 11), "B": (10.5, 9.5, 11.5),
                                        "C": (20, 19, 21)}))
    assert marks(comparison_table(metrics), "fid") == {"A": "best", "B": "tie", "C": ""}


def test_higher_is_better_marks_best_and_overlapping_tie():
    metrics = pd.DataFrame(rows("precision", {"A": (0.5, 0.45, 0.55), "B": (0.8, 0.75, 0.85),
                                              "C": (0.78, 0.70, 0.86)}))
    assert marks(comparison_table(metrics), "precision") == {"A": "", "B": "best", "C": "tie"}


def test_runs_are_ranked_only_among_runs_of_the_same_extractor():
    images = rows("precision", {"A": (0.5, 0.45, 0.55), "B": (0.8, 0.75, 0.85)})
    audio = rows("precision", {"S": (1.0, 0.95, 1.0), "T": (0.6, 0.5, 0.7)})
    for r in audio:
        r["extractor"] = "tones-classifier"
    table = comparison_table(pd.DataFrame(images + audio))
    assert marks(table, "precision") == {"A": "", "B": "best", "S": "best", "T": ""}
    alone = rows("precision", {"C": (0.9, 0.85, 0.95)})
    alone[0]["extractor"] = "tones-classifier"
    table = comparison_table(pd.DataFrame(images + alone))
    assert marks(table, "precision") == {"A": "", "B": "best", "C": ""}  # one run is best at nothing


def test_missing_interval_claims_no_tie():
    # the best run has no interval: nobody ties with it, however close
    no_best_ci = pd.DataFrame(rows("kid", {"A": (1.0, NAN, NAN), "B": (1.01, 0.5, 1.5)}))
    assert marks(comparison_table(no_best_ci), "kid") == {"A": "best", "B": ""}
    # a run without an interval does not tie with a best that has one
    no_run_ci = pd.DataFrame(rows("kid", {"A": (1.0, 0.5, 1.5), "B": (1.01, NAN, NAN)}))
    assert marks(comparison_table(no_run_ci), "kid") == {"A": "best", "B": ""}


def test_touching_intervals_tie_and_disjoint_do_not():
    cells = [Cell(1.0, 0.0, 2.0, 10), Cell(3.0, 2.0, 4.0, 10), Cell(3.1, 2.01, 4.0, 10)]
    assert [c.mark for c in mark_column(cells, higher=False)] == ["best", "tie", ""]


def test_single_run_skipped_figure_and_missing_cell_get_no_mark():
    metrics = pd.DataFrame(rows("fid", {"A": (10, 9, 11)}) + rows("kid", {"A": (1, 0, 2)})
                           + rows("fid", {"B": (NAN, NAN, NAN)}))
    table = comparison_table(metrics)
    assert marks(table, "fid") == {"A": "", "B": ""}
    assert marks(table, "kid") == {"A": "", "B": None}


def test_directions_override_and_per_group_columns():
    metrics = pd.DataFrame(rows("fid", {"A": (10, 9, 11), "B": (20, 19, 21)})
                           + rows("fid", {"A": (30, 29, 31), "B": (12, 11, 13)},
                                  group="class=star"))
    table = comparison_table(metrics, directions={"fid": True}, groups=("all", "class=star"))
    assert list(table.columns) == ["fid", "fid [class=star]"]
    assert marks(table, "fid") == {"A": "", "B": "best"}
    assert marks(table, "fid [class=star]") == {"A": "best", "B": ""}


def test_runs_descriptors_come_first_and_cells_print_value_interval_n():
    metrics = pd.DataFrame(rows("fid", {"A": (10, 9, 11), "B": (10.5, 9.5, 11.5)}, n=64))
    runs = pd.DataFrame({"dataset": ["B", "A"], "scheduler": ["ddim", "dpmsolver++"],
                         "samples_per_second": [2.0, 1.0]})
    table = comparison_table(metrics, runs=runs)
    assert list(table.columns) == ["scheduler", "samples_per_second", "fid"]
    assert table.loc["A", "scheduler"] == "dpmsolver++"
    assert str(table.loc["A", "fid"]) == "10 [9, 11] N=64 (best)"
    assert str(table.loc["B", "fid"]) == "10.5 [9.5, 11.5] N=64 (tie)"


def test_duplicate_figures_are_an_error_naming_them():
    metrics = pd.DataFrame(rows("fid", {"A": (10, 9, 11)}) * 2)
    with pytest.raises(ValueError, match="'A'.*'fid'"):
        comparison_table(metrics)


def test_throughput_is_samples_over_summed_seconds(tmp_path):
    pd.DataFrame({"seconds": [1.0, 1.0, 2.0], "kept": [True, False, True],
                  "scheduler": ["ddim"] * 3, "steps": [10] * 3}).to_parquet(
        tmp_path / "manifest.parquet")
    assert throughput(tmp_path) == pytest.approx(0.75)
    info = run_descriptors(tmp_path)
    assert info["samples"] == 3 and info["kept"] == 2 and info["scheduler"] == "ddim"
    assert info["samples_per_second"] == 0.75


def test_throughput_without_timings_is_nan(tmp_path):
    pd.DataFrame({"seconds": [0.0, 0.0]}).to_parquet(tmp_path / "manifest.parquet")
    assert math.isnan(throughput(tmp_path))
