"""Line up several evaluated runs: one row per dataset, one column per metric, best and ties marked.

Runs are ranked only against runs whose figure came from the same extractor (the ``extractor``
column of metrics.csv): an image set and an audio set may share the precision column, but neither
is "best" against the other.

Tie rule: in each column, among runs of one extractor, the best finite value is marked ``best``; another run is a ``tie`` when
its interval overlaps an interval of a best run (``lo_a <= hi_b and lo_b <= hi_a``). A run without
an interval, or a column whose best run has none, makes no tie claim. Overlapping intervals do not
show two runs are equal; they show this evaluation cannot rank them. Which way is better is the
figure's declaration (``evaluation.registry.figure_spec``); an undeclared figure gets no marks.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal, Mapping, Sequence

import pandas as pd

from augment.core.versions import dataset_label
from evaluation.registry import figure_spec

Mark = Literal["best", "tie", ""]


def higher_is_better(metric: str) -> bool | None:
    """Direction of figure ``metric`` as declared; None when no metric or audit declares it."""
    declared = figure_spec(metric)
    return declared.higher_is_better if declared else None


@dataclass(frozen=True)
class Cell:
    """One run's figure for one metric column of the comparison table."""

    value: float
    ci_low: float
    ci_high: float
    n: int
    mark: Mark = ""

    @property
    def has_interval(self) -> bool:
        return math.isfinite(self.ci_low) and math.isfinite(self.ci_high)

    def __str__(self) -> str:
        text = format_number(self.value)
        if self.has_interval:
            text += f" [{format_number(self.ci_low)}, {format_number(self.ci_high)}]"
        text += f" N={self.n}"
        return f"{text} ({self.mark})" if self.mark else text


def format_number(x: float) -> str:
    """Four significant digits; "n/a" for NaN (a skipped figure)."""
    return "n/a" if not math.isfinite(x) else f"{x:.4g}"


def intervals_overlap(a_low: float, a_high: float, b_low: float, b_high: float) -> bool:
    """Whether two intervals share a point: two figures whose intervals overlap are a tie."""
    return a_low <= b_high and b_low <= a_high


def mark_column(cells: Sequence[Cell | None], higher: bool | None) -> list[Cell | None]:
    """The cells with ``best`` / ``tie`` marks (module docstring); None stays None.

    Marks need two or more finite values and a direction (``higher`` None: unknown): one run alone
    is not "best" at anything.
    """
    finite = [c for c in cells if c is not None and math.isfinite(c.value)]
    if len(finite) < 2 or higher is None:
        return list(cells)
    best_value = (max if higher else min)(c.value for c in finite)
    best = [c for c in finite if c.value == best_value and c.has_interval]
    out: list[Cell | None] = []
    for c in cells:
        if c is None or not math.isfinite(c.value):
            out.append(c)
            continue
        mark: Mark = ""
        if c.value == best_value:
            mark = "best"
        elif c.has_interval and any(intervals_overlap(c.ci_low, c.ci_high, b.ci_low, b.ci_high)
                                    for b in best):
            mark = "tie"
        out.append(replace(c, mark=mark))
    return out


def column_name(metric: str, group: str) -> str:
    return metric if group == "all" else f"{metric} [{group}]"


def comparison_table(metrics: pd.DataFrame, directions: Mapping[str, bool] | None = None,
                     runs: pd.DataFrame | None = None,
                     groups: Sequence[str] = ("all",)) -> pd.DataFrame:
    """One row per dataset, one ``Cell`` column per (metric, group), best and ties marked.

    ``metrics``: several metrics.csv tables concatenated (``evaluation.figures.COLUMNS``).
    ``directions`` overrides ``higher_is_better`` per metric. ``runs``: one row per dataset with a ``dataset``
    column and descriptor columns (generator, scheduler, steps, samples_per_second, ...; see
    ``runs_table``), placed before the metric columns. ``groups`` picks which groups become columns
    (``"all"`` = overall figures, named by the metric alone; others ``"metric [group]"``).
    The index is the dataset name; a cell is None where a run lacks that figure.
    """
    directions = dict(directions or {})
    rows = metrics[metrics["group"].isin(groups)]
    dup = rows.duplicated(["dataset", "metric", "group"])
    if dup.any():
        first = rows[dup].iloc[0]
        raise ValueError(f"metrics hold dataset {first['dataset']!r}, metric {first['metric']!r}, "
                         f"group {first['group']!r} more than once: give each run its own "
                         "dataset name")
    datasets = list(dict.fromkeys(metrics["dataset"]))
    columns: dict[str, list[Cell | None]] = {}
    for (metric, group), part in rows.groupby(["metric", "group"], sort=False):
        higher = directions.get(metric, higher_is_better(metric))
        column: list[Cell | None] = [None] * len(datasets)
        # figures are ranked only among runs measured by the same extractor (an image set's
        # precision and an audio set's share a column, never a "best")
        kinds = part.groupby("extractor", sort=False, dropna=False) if "extractor" in part else [
            (None, part)]
        for _, same in kinds:
            by_dataset = {r.dataset: Cell(float(r.value), float(r.ci_low), float(r.ci_high),
                                          int(r.n)) for r in same.itertuples()}
            marked = mark_column([by_dataset.get(d) for d in datasets], higher)
            column = [m if m is not None else c for m, c in zip(marked, column)]
        columns[column_name(metric, group)] = column
    table = pd.DataFrame(columns, index=pd.Index(datasets, name="dataset"), dtype=object)
    if runs is None:
        return table
    descriptors = runs.set_index("dataset").reindex(datasets)
    return pd.concat([descriptors, table], axis=1)


def throughput(dataset_dir: str | Path, manifest: pd.DataFrame | None = None) -> float:
    """Generation throughput in samples/s: manifest samples / sum of per-sample seconds.

    Counts every generated sample (dropped and failed ones took time too); NaN when no time
    was recorded. ``manifest``: the folder's manifest, when the caller has read it already.
    """
    if manifest is None:
        manifest = pd.read_parquet(Path(dataset_dir) / "manifest.parquet", columns=["seconds"])
    seconds = float(manifest["seconds"].sum())
    return len(manifest) / seconds if seconds > 0 else float("nan")


def run_descriptors(dataset_dir: str | Path) -> dict:
    """What distinguishes one generation run: backend, model, sampler settings, counts, samples/s.

    Read from the dataset folder (manifest.parquet, dataset.json); a setting that varies inside
    the run lists its distinct values.
    """
    root = Path(dataset_dir)
    manifest = pd.read_parquet(root / "manifest.parquet")
    out: dict = {"dataset": dataset_label(root)}
    for col in ("backend", "model", "scheduler", "steps", "guidance"):
        if col in manifest:
            values = sorted(manifest[col].dropna().unique().tolist())
            out[col] = values[0] if len(values) == 1 else ", ".join(map(str, values))
    info_path = root / "dataset.json"
    counts = json.loads(info_path.read_text()).get("counts", {}) if info_path.exists() else {}
    out["samples"] = len(manifest)
    out["kept"] = counts.get("kept", int(manifest["kept"].sum()))
    out["samples_per_second"] = round(throughput(root, manifest), 3)
    return out


def runs_table(descriptors: Sequence[dict]) -> pd.DataFrame:
    """One row per run, from ``run_descriptors`` dicts (the folders a caller could read)."""
    rows = [row for row in descriptors if row]
    return pd.DataFrame(rows, columns=None if rows else ["dataset"])
