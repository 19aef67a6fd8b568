"""Human-readable report of one or several evaluated datasets: ``summary.md`` and ``report.html``.

``report.html`` is self-contained: inline CSS, every figure a ``data:image/png;base64`` URI and
every sound (the players of audio samples) a ``data:audio/wav;base64`` URI, no script, no external
URL, so it opens offline. Every text from data (captions, prompts, names, details) is HTML-escaped:
captions and prompts are untrusted input. ``summary.md`` escapes ``<``, ``>`` and ``&`` as
entities too, so a Markdown renderer that allows raw HTML shows them as text.
"""

from __future__ import annotations

import base64
import html
import json
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Sequence

import pandas as pd

from augment.core.io import atomic_write_text
from augment.core.versions import dataset_label
from evaluation.compare import (Cell, comparison_table, format_number, higher_is_better,
                                run_descriptors, runs_table)
from evaluation.figures import COLUMNS
from evaluation.plots import Picture, metric_bars
from evaluation.registry import MODALITIES, figure_spec
from evaluation.sets import dataset_modality

log = logging.getLogger(__name__)

HOW_TO_READ = (
    "Each figure is measured on N samples and comes with an interval: how far it could move with "
    "another draw of N samples (bootstrap percentile or Wilson intervals at the configured "
    "confidence, 95% by default; KID and IS give mean +- std over subsets; each row's details say "
    "which). A small N gives a wide interval, and FID is biased upward below a few thousand "
    "samples. A figure without an interval shows none. In the comparison table the best value of "
    "each column is marked best, and a run whose interval overlaps the best run's is marked tie: "
    "this evaluation cannot rank the two. A run or best value without an interval claims no tie.")

_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; margin: 2em auto;
       max-width: 1200px; padding: 0 1em; color: #1d1d1f; line-height: 1.45; }
h1 { margin-bottom: 0.2em; } h2 { border-bottom: 1px solid #ddd; padding-bottom: 0.2em; }
table { border-collapse: collapse; margin: 0.6em 0 1.2em; font-size: 0.88em; }
th, td { border: 1px solid #d6d6d6; padding: 3px 8px; text-align: left; vertical-align: top; }
th { background: #f3f3f3; } td.best { font-weight: bold; background: #dff3df; }
td.tie { background: #f4f9e6; } .note { color: #8a5a00; }
.pictures { display: flex; flex-wrap: wrap; gap: 12px; align-items: flex-start; }
.pictures.cols { display: grid; } figure { margin: 0; } img { max-width: 100%; }
audio { display: block; width: 100%; min-width: 12em; height: 2em; }
figcaption { font-size: 0.8em; color: #555; max-width: 40em; }
nav a { margin-right: 1em; }
"""


@dataclass
class Section:
    """An extra part of the report the caller computed: a bias audit, memorization examples, ...

    ``text`` is plain text (paragraphs separated by blank lines), never interpreted as HTML or
    Markdown. ``columns`` lays ``images`` out that many per row (2 for image pairs); 0 = as many
    as fit.
    """

    title: str
    text: str = ""
    table: pd.DataFrame | None = None
    images: list[Picture] = field(default_factory=list)
    columns: int = 0


@dataclass
class _DatasetPart:
    """What the report shows of one dataset folder beyond its metric rows."""

    name: str
    overview: dict = field(default_factory=dict)
    pictures: list[Picture] = field(default_factory=list)
    captions: pd.DataFrame | None = None
    notes: list[str] = field(default_factory=list)


@dataclass
class _Report:
    title: str
    metrics: pd.DataFrame
    header: dict[str, str]
    comparison: pd.DataFrame | None
    charts: list[Picture]
    parts: list[_DatasetPart]
    sections: list[Section]

    @property
    def warnings(self) -> pd.DataFrame:
        """Rows whose details warn or say the figure was skipped."""
        hit = self.metrics["details"].fillna("").str.contains("WARNING|skipped", case=False)
        return self.metrics.loc[hit, ["dataset", "metric", "group", "details"]]


def write_report(out_dir: str | Path, metrics: pd.DataFrame, datasets: Sequence[str | Path],
                 title: str = "synthmill report", sections: Sequence[Section] | None = None,
                 run_info: Mapping[str, str] | None = None,
                 samples_per_class: int = 4) -> dict[str, Path]:
    """Write ``summary.md`` and ``report.html`` into ``out_dir``; returns their paths.

    ``metrics``: one or several metrics.csv tables concatenated (``evaluation.figures.COLUMNS``);
    every row appears in report.html. ``datasets``: the evaluated dataset folders (counts,
    throughput, and the pictures their modality draws: sample grids, class balance); a folder that
    is not a synthmill dataset is noted, not drawn.
    ``sections``: extra parts, after the built-in ones. ``run_info``: header lines such as run id,
    start time and duration (the caller reads the clock). With several datasets, a comparison
    table (``comparison_table``) lines them up.
    """
    # 1. Check inputs
    missing = [c for c in COLUMNS if c not in metrics.columns]
    if missing:
        raise ValueError(f"metrics lack columns {missing}; expected {COLUMNS}")
    # 2. Gather what both files show
    names = list(dict.fromkeys(metrics["dataset"]))
    header = {"datasets": ", ".join(names),
              "reference": _distinct(metrics["reference"]),
              "extractor": _distinct(metrics["extractor"]), **dict(run_info or {})}
    # the comparison lines up the datasets given (an audit set's rows are a different kind of figure)
    compared = metrics[metrics["dataset"].isin({dataset_label(d) for d in datasets})]
    comparison = (comparison_table(compared, runs=runs_table(datasets))
                  if compared["dataset"].nunique() > 1 else None)
    report = _Report(title, metrics.reset_index(drop=True), header, comparison,
                     _metric_charts(metrics),
                     [_dataset_part(Path(d), samples_per_class) for d in datasets],
                     list(sections or []))
    # 3. Write
    out_dir = Path(out_dir)
    return {"summary": atomic_write_text(out_dir / "summary.md", _markdown(report)),
            "html": atomic_write_text(out_dir / "report.html", _html(report))}


def _distinct(column: pd.Series) -> str:
    values = [str(v) for v in dict.fromkeys(column.fillna("")) if str(v)]
    return ", ".join(values) or "none"


def _metric_charts(metrics: pd.DataFrame) -> list[Picture]:
    """One chart per figure name with a value, as its declaration says (``plot``, direction)."""
    charts = []
    for metric in dict.fromkeys(metrics["metric"]):
        declared = figure_spec(metric)
        if declared is not None and declared.plot == "none":
            continue
        if metrics.loc[metrics["metric"] == metric, "value"].astype(float).notna().any():
            caption = f"{metric}: {declared.direction} is better" if declared else metric
            charts.append(Picture(metric_bars(metrics, metric), caption))
    return charts


def _dataset_part(root: Path, per_class: int) -> _DatasetPart:
    part = _DatasetPart(dataset_label(root))
    if not (root / "manifest.parquet").exists():
        part.notes.append("not a synthmill dataset folder (no manifest.parquet): no samples shown")
        return part
    try:
        info = json.loads((root / "dataset.json").read_text())
        counts = info.get("counts", {})
        part.overview = {**run_descriptors(root),
                         **{k: counts[k] for k in ("dropped", "failed") if k in counts}}
        hooks = MODALITIES.get(dataset_modality(root)).load_hooks()
        part.pictures, part.captions = hooks.pictures(root, per_class)
    except (OSError, ValueError, KeyError) as exc:
        # one unreadable dataset must not cost the report of the others
        log.warning("report: cannot show dataset %s: %s", root, exc)
        part.notes.append(f"cannot show this dataset: {exc}")
    return part


# -- display tables (shared by both renderers) ------------------------------------------------

def _interval(lo: float, hi: float) -> str:
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return ""
    return f"[{format_number(lo)}, {format_number(hi)}]"


def _figures(rows: pd.DataFrame, full: bool) -> pd.DataFrame:
    """Metric rows for display; ``full`` keeps dataset, reference and extractor columns."""
    out = pd.DataFrame({
        "metric": rows["metric"], "group": rows["group"],
        "value": [format_number(float(v)) for v in rows["value"]],
        "interval": [_interval(float(lo), float(hi))
                     for lo, hi in zip(rows["ci_low"], rows["ci_high"])],
        "N": rows["n"], "details": rows["details"].fillna("")})
    if full:
        out.insert(0, "extractor", rows["extractor"])
        out.insert(0, "reference", rows["reference"])
        out.insert(0, "dataset", rows["dataset"])
    return out


def _with_directions(table: pd.DataFrame) -> pd.DataFrame:
    """Comparison columns named with their direction, e.g. ``fid (lower better)``."""
    def name(col: str) -> str:
        higher = higher_is_better(col.split(" [")[0])
        if higher is None or not any(isinstance(v, Cell) for v in table[col]):
            return col
        return f"{col} ({'higher' if higher else 'lower'} better)"

    return table.reset_index().rename(columns={c: name(c) for c in table.columns})


def _text(value) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return format_number(value)
    return str(value)


# -- Markdown ---------------------------------------------------------------------------------

def _md_cell(value) -> str:
    text = html.escape(_text(value), quote=False).replace("|", "\\|")
    return " ".join(text.split())


def markdown_table(table: pd.DataFrame) -> str:
    """A GitHub-flavoured Markdown table; cells escaped (``<>&`` as entities, ``|``, newlines)."""
    lines = ["| " + " | ".join(_md_cell(c) for c in table.columns) + " |",
             "|" + "---|" * len(table.columns)]
    lines += ["| " + " | ".join(_md_cell(v) for v in row) + " |"
              for row in table.itertuples(index=False)]
    return "\n".join(lines)


def _md_text(text: str) -> str:
    return html.escape(text, quote=False)


def _markdown(report: _Report) -> str:
    out = [f"# {_md_text(report.title)}", ""]
    out += [f"- **{_md_text(k)}**: {_md_text(str(v))}" for k, v in report.header.items()]
    out += ["", "## How to read this", "", HOW_TO_READ, ""]
    warnings = report.warnings
    if len(warnings):
        out += ["## Warnings", "", markdown_table(warnings), ""]
    if report.comparison is not None:
        out += ["## Comparison", "", markdown_table(_with_directions(report.comparison)), ""]
    for name in dict.fromkeys(report.metrics["dataset"]):
        rows = report.metrics[(report.metrics["dataset"] == name)
                              & (report.metrics["group"] == "all")]
        out += [f"## {_md_text(str(name))}", ""]
        part = next((p for p in report.parts if p.name == name), None)
        if part and part.overview:
            out += [", ".join(f"{_md_text(k)}: {_md_text(_text(v))}"
                              for k, v in part.overview.items()), ""]
        out += [markdown_table(_figures(rows, full=False)), ""]
        players = [p.caption for p in (part.pictures if part else []) if p.audio is not None]
        if players:
            out += [f"{len(players)} audio player(s) in report.html: "
                    + "; ".join(_md_text(c) for c in players), ""]
    for section in report.sections:
        out += [f"## {_md_text(section.title)}", ""]
        if section.text:
            out += [_md_text(section.text), ""]
        if section.table is not None:
            out += [markdown_table(section.table), ""]
        if section.images:
            sounds = sum(p.audio is not None for p in section.images)
            out += [f"({len(section.images)} figure(s)"
                    + (f", {sounds} with an audio player," if sounds else "")
                    + " in report.html)", ""]
    out += ["Per-group figures, plots and samples: report.html; every figure: metrics.csv.", ""]
    return "\n".join(out)


# -- HTML -------------------------------------------------------------------------------------

def _e(value) -> str:
    return html.escape(_text(value), quote=True)


def html_table(table: pd.DataFrame) -> str:
    """An escaped HTML table; ``Cell`` values marked best / tie get that CSS class."""
    head = "".join(f"<th>{_e(c)}</th>" for c in table.columns)
    body = []
    for row in table.itertuples(index=False):
        cells = []
        for v in row:
            mark = v.mark if isinstance(v, Cell) else ""
            cls = f' class="{mark}"' if mark else ""
            cells.append(f"<td{cls}>{_e(v)}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _figure(p: Picture) -> str:
    """A picture, with an inline player when it carries a sound (no script: the browser's own)."""
    out = f'<figure><img src="data:image/png;base64,{_b64(p.png)}" alt="{_e(p.caption)}">'
    if p.audio is not None:
        out += (f'<audio controls preload="none" src="data:audio/wav;base64,{_b64(p.audio)}">'
                "</audio>")
    return out + f"<figcaption>{_e(p.caption)}</figcaption></figure>"


def _pictures(pictures: Sequence[Picture], columns: int = 0) -> str:
    cls, style = "pictures", ""
    if columns:
        cls += " cols"
        style = f' style="grid-template-columns: repeat({int(columns)}, auto)"'
    return f'<div class="{cls}"{style}>{"".join(_figure(p) for p in pictures)}</div>'


def _paragraphs(text: str) -> str:
    return "".join(f"<p>{_e(p.strip())}</p>" for p in text.split("\n\n") if p.strip())


def _html_dataset(report: _Report, part: _DatasetPart, anchor: str) -> str:
    rows = report.metrics[(report.metrics["dataset"] == part.name)
                          & (report.metrics["group"] == "all")]
    out = [f'<section id="{anchor}"><h2>Dataset: {_e(part.name)}</h2>']
    if part.overview:
        out.append(html_table(pd.DataFrame([part.overview])))
    out += [f'<p class="note">{_e(n)}</p>' for n in part.notes]
    if len(rows):
        out += ["<h3>Overall figures</h3>", html_table(_figures(rows, full=False))]
    figures = [p for p in part.pictures if p.audio is None]
    players = [p for p in part.pictures if p.audio is not None]
    if figures:
        out += ["<h3>Samples and class balance</h3>", _pictures(figures)]
    if players:
        out += ["<h3>Listen: samples per class</h3>", _pictures(players)]
    if part.captions is not None and len(part.captions):
        out += ["<h3>Captions of the samples shown</h3>", html_table(part.captions)]
    return "".join(out) + "</section>"


def _html(report: _Report) -> str:
    datasets = [(f"dataset-{i}", p) for i, p in enumerate(report.parts)]
    sections = [(f"section-{i}", s) for i, s in enumerate(report.sections)]
    nav = [("how", "How to read this"), ("warnings", "Warnings")]
    nav += [("comparison", "Comparison")] if report.comparison is not None else []
    nav += [("charts", "Charts")] + [(a, p.name) for a, p in datasets]
    nav += [(a, s.title) for a, s in sections] + [("all-figures", "All figures")]
    header = "".join(f"<tr><th>{_e(k)}</th><td>{_e(v)}</td></tr>" for k, v in report.header.items())
    warnings = report.warnings
    body = [
        f"<h1>{_e(report.title)}</h1>", f"<table>{header}</table>",
        "<nav>" + "".join(f'<a href="#{a}">{_e(t)}</a>' for a, t in nav) + "</nav>",
        f'<section id="how"><h2>How to read this</h2><p>{_e(HOW_TO_READ)}</p></section>',
        '<section id="warnings"><h2>Warnings</h2>'
        + (html_table(warnings) if len(warnings) else "<p>None.</p>") + "</section>"]
    if report.comparison is not None:
        body.append('<section id="comparison"><h2>Comparison</h2>'
                    + html_table(_with_directions(report.comparison)) + "</section>")
    body.append('<section id="charts"><h2>Charts</h2>' + _pictures(report.charts) + "</section>")
    body += [_html_dataset(report, part, anchor) for anchor, part in datasets]
    for anchor, s in sections:
        body.append(f'<section id="{anchor}"><h2>{_e(s.title)}</h2>' + _paragraphs(s.text)
                    + (html_table(s.table) if s.table is not None else "")
                    + (_pictures(s.images, s.columns) if s.images else "") + "</section>")
    body.append('<section id="all-figures"><h2>All figures (metrics.csv)</h2>'
                + html_table(_figures(report.metrics, full=True)) + "</section>")
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{_e(report.title)}</title><style>{_CSS}</style></head><body>"
            + "\n".join(body) + "</body></html>\n")
