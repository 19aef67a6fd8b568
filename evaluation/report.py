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
from functools import cached_property
from pathlib import Path
from typing import Mapping, Sequence

import pandas as pd

from augment.core.io import atomic_write_text
from augment.core.versions import dataset_label
from evaluation.compare import Cell, comparison_table, format_number, run_descriptors, runs_table
from evaluation.figures import COLUMNS
from evaluation.headline import (HeadlineLine, Segment, Verdict, count_text, distinct_warnings,
                                 headline)
from evaluation.plots import FLAGGED, Picture, metric_bars, metric_caption
from evaluation.registry import MODALITIES, count_spec, figure_spec
from evaluation.sets import dataset_modality

log = logging.getLogger(__name__)

HOW_TO_READ = {
    "intervals": (
        "Each figure is measured on N samples and comes with an interval: how far it could move "
        "with another draw of N samples (bootstrap percentile or Wilson intervals at the "
        "configured confidence, 95% by default; KID and IS give mean +- std over subsets; each "
        "row's details say which). A small N gives a wide interval, and FID and FAD are biased "
        "upward below a few thousand samples. A figure without an interval shows none; a count "
        "(unreadable files) is a number of files, not a rate. Which way is better is declared "
        "once per figure and written beside it."),
    "comparison": (
        "Two datasets are ranked on a figure only when their intervals are apart: overlapping "
        "intervals are a tie, which means this evaluation cannot rank the two, not that they are "
        "equal. In the tables the best value of each figure is marked best (green), and a dataset "
        "whose interval overlaps the best one's is marked tie (light green); a figure without an "
        "interval claims no tie."),
    "audit": (
        "A bias audit asks, per group (e.g. per class), whether an attribute the generator was "
        "left to choose (e.g. colour) is spread as its target says beyond sampling noise; a "
        "group it flags is SKEWED, shown in red here and outlined in red on the charts."),
}
"""What "How to read this" says: ``intervals`` always, the others when the report shows them."""

_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; margin: 2em auto;
       max-width: 1200px; padding: 0 1em; color: #1d1d1f; line-height: 1.45; }
h1 { margin-bottom: 0.2em; } h2 { border-bottom: 1px solid #ddd; padding-bottom: 0.2em; }
table { border-collapse: collapse; margin: 0.6em 0 1.2em; font-size: 0.88em; max-width: 100%; }
th, td { border: 1px solid #d6d6d6; padding: 3px 8px; text-align: left; vertical-align: top;
         overflow-wrap: break-word; }
th { background: #f3f3f3; } td.best { font-weight: bold; background: #dff3df; }
td.tie { background: #f4f9e6; } .note { color: #8a5a00; }
.flagged { color: FLAGGED_COLOUR; font-weight: bold; }
#headline { font-size: 1.05em; background: #f7f7f9; border: 1px solid #e2e2e6; padding: 0.2em 1em; }
#headline li { margin: 0.2em 0; }
details > summary { cursor: pointer; font-weight: 600; margin: 0.4em 0; }
.pictures { display: flex; flex-wrap: wrap; gap: 12px; align-items: flex-start; }
.pictures.cols { display: grid; } figure { margin: 0; } img { max-width: 100%; }
audio { display: block; width: 100%; min-width: 12em; height: 2em; }
figcaption { font-size: 0.8em; color: #555; max-width: 40em; }
nav a { margin-right: 1em; }
""".replace("FLAGGED_COLOUR", FLAGGED)


@dataclass
class Section:
    """An extra part of the report the caller computed: a bias audit, memorization examples, ...

    ``text`` is plain text (paragraphs separated by blank lines), never interpreted as HTML or
    Markdown. ``verdicts``: an audit's verdicts, one per group, listed and carried into the
    headline. ``columns`` lays ``images`` out that many per row (2 for image pairs); 0 = as many
    as fit. ``with_figures``: shown with the charts, before the datasets' samples (an audit's or a
    study's figures); else after the datasets (pictures of samples, such as the closest pairs).
    """

    title: str
    text: str = ""
    table: pd.DataFrame | None = None
    images: list[Picture] = field(default_factory=list)
    columns: int = 0
    verdicts: list[Verdict] = field(default_factory=list)
    with_figures: bool = False


@dataclass
class _DatasetPart:
    """What the report shows of one dataset folder beyond its metric rows."""

    name: str
    descriptors: dict = field(default_factory=dict)  # ``run_descriptors``: empty if unreadable
    overview: dict = field(default_factory=dict)
    pictures: list[Picture] = field(default_factory=list)
    captions: pd.DataFrame | None = None
    notes: list[str] = field(default_factory=list)


@dataclass
class _Report:
    title: str
    metrics: pd.DataFrame
    header: dict[str, str]
    compared: pd.DataFrame
    table: pd.DataFrame | None
    charts: list[Picture]
    parts: list[_DatasetPart]
    sections: list[Section]

    @property
    def comparison(self) -> pd.DataFrame | None:
        """The comparison table, when several datasets are compared."""
        return self.table if self.table is not None and len(self.table) > 1 else None

    @property
    def verdicts(self) -> list[Verdict]:
        return [v for s in self.sections for v in s.verdicts]

    @cached_property
    def warnings(self) -> pd.DataFrame:
        """Each distinct warning once: how many figures carry it and where."""
        return distinct_warnings(self.metrics)

    @cached_property
    def headline(self) -> list[HeadlineLine]:
        return headline(self.compared, {p.name: p.overview for p in self.parts}, self.verdicts,
                        self.warnings)

    @cached_property
    def key(self) -> pd.DataFrame | None:
        """The key-figures table, when it has a figure to show."""
        key = _key_table(self.table) if self.table is not None else None
        return key if key is not None and len(key.columns) > 1 else None

    def how_to_read(self) -> list[str]:
        return ([HOW_TO_READ["intervals"]]
                + ([HOW_TO_READ["comparison"]] if self.comparison is not None else [])
                + ([HOW_TO_READ["audit"]] if self.verdicts else []))


def write_report(out_dir: str | Path, metrics: pd.DataFrame, datasets: Sequence[str | Path],
                 title: str = "synthmill report", sections: Sequence[Section] | None = None,
                 run_info: Mapping[str, str] | None = None,
                 samples_per_class: int = 4) -> dict[str, Path]:
    """Write ``summary.md`` and ``report.html`` into ``out_dir``; returns their paths.

    Both open with a headline (``_headline``: which dataset is better on what, by intervals; kept
    shares; audit verdicts; memorized samples; warnings), then the key figures (figures declared
    ``key``), then the detail. ``metrics``: one or several metrics.csv tables concatenated
    (``evaluation.figures.COLUMNS``); every row appears in report.html. ``datasets``: the
    evaluated dataset folders (counts, throughput, and the pictures their modality draws: sample
    grids, class balance); a folder that is not a synthmill dataset is noted, not drawn.
    ``sections``: extra parts (audits, studies, memorization), placed as their ``with_figures``
    says. ``run_info``: header lines such as run id, start time and duration (the
    caller reads the clock). With several datasets, a comparison (``comparison_table``) lines them
    up.
    """
    # 1. Check inputs
    missing = [c for c in COLUMNS if c not in metrics.columns]
    if missing:
        raise ValueError(f"metrics lack columns {missing}; expected {COLUMNS}")
    # 2. Gather what both files show
    metrics = metrics.reset_index(drop=True)
    names = list(dict.fromkeys(metrics["dataset"]))
    header = {"datasets": ", ".join(names),
              "reference": _distinct(metrics["reference"]),
              "extractor": _distinct(metrics["extractor"]), **dict(run_info or {})}
    # the comparison lines up the datasets given (an audit set's rows are another kind of figure)
    compared = metrics[metrics["dataset"].isin({dataset_label(d) for d in datasets})]
    parts = [_dataset_part(Path(d), samples_per_class) for d in datasets]
    table = (comparison_table(compared, runs=runs_table([p.descriptors for p in parts]))
             if compared["dataset"].nunique() else None)
    sections = list(sections or [])
    flagged = {(v.dataset, v.group) for s in sections for v in s.verdicts if v.flagged}
    report = _Report(title, metrics, header, compared, table, _metric_charts(metrics, flagged),
                     parts, sections)
    # 3. Write
    out_dir = Path(out_dir)
    return {"summary": atomic_write_text(out_dir / "summary.md", _markdown(report)),
            "html": atomic_write_text(out_dir / "report.html", _html(report))}


def _distinct(column: pd.Series) -> str:
    values = [str(v) for v in dict.fromkeys(column.fillna("")) if str(v)]
    return ", ".join(values) or "none"


def _metric_charts(metrics: pd.DataFrame, flagged: set[tuple[str, str]]) -> list[Picture]:
    """One chart per figure name with a value, as its declaration says (``plot``, direction):
    counts and figures not charted are left out, as is a figure with no value to draw.
    ``flagged``: (dataset, group) pairs an audit flagged, outlined in red."""
    charts = []
    for metric in dict.fromkeys(metrics["metric"]):
        declared = figure_spec(metric)
        if declared is not None and declared.plot != "bars":
            continue
        rows = metrics[metrics["metric"] == metric]
        if rows["value"].astype(float).notna().any():
            marked = {(d, g) for d, g in zip(rows["dataset"], rows["group"]) if (d, g) in flagged}
            caption = metric_caption(rows, metric)
            if marked:
                caption += ("; outlined in red: groups their audit flagged ("
                            + ", ".join(sorted({g for _, g in marked})) + ")")
            charts.append(Picture(metric_bars(metrics, metric, flagged=marked), caption))
    return charts


def _dataset_part(root: Path, per_class: int) -> _DatasetPart:
    part = _DatasetPart(dataset_label(root))
    if not (root / "manifest.parquet").exists():
        part.notes.append("not a synthmill dataset folder (no manifest.parquet): no samples shown")
        return part
    try:
        part.descriptors = run_descriptors(root)
        counts = json.loads((root / "dataset.json").read_text()).get("counts", {})
        part.overview = {**part.descriptors,
                         **{k: counts[k] for k in ("dropped", "failed") if k in counts}}
        hooks = MODALITIES.get(dataset_modality(root)).load_hooks()
        part.pictures, part.captions = hooks.pictures(root, per_class)
    except (OSError, ValueError, KeyError) as exc:
        # one unreadable dataset must not cost the report of the others
        log.warning("report: cannot show dataset %s: %s", root, exc)
        part.notes.append(f"cannot show this dataset: {exc}")
    return part


# -- display tables (shared by both renderers) ------------------------------------------------

@dataclass(frozen=True)
class _Marked:
    """A table cell's text with its comparison mark (``best`` / ``tie`` / "")."""

    text: str
    mark: str = ""

    def __str__(self) -> str:
        return self.text


def _value(metric: str, value: float) -> str:
    declared = count_spec(metric)
    if declared:
        return count_text(value, declared.unit)
    return format_number(value)


def _interval(lo: float, hi: float) -> str:
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return ""
    return f"[{format_number(lo)}, {format_number(hi)}]"


def _figures(rows: pd.DataFrame, full: bool) -> pd.DataFrame:
    """Metric rows for display; ``full`` keeps dataset, reference and extractor columns."""
    out = pd.DataFrame({
        "metric": rows["metric"], "group": rows["group"],
        "value": [_value(m, float(v)) for m, v in zip(rows["metric"], rows["value"])],
        "interval": [_interval(float(lo), float(hi))
                     for lo, hi in zip(rows["ci_low"], rows["ci_high"])],
        "N": rows["n"], "details": rows["details"].fillna("")})
    if full:
        out.insert(0, "extractor", rows["extractor"])
        out.insert(0, "reference", rows["reference"])
        out.insert(0, "dataset", rows["dataset"])
    return out


def _named(metric: str) -> str:
    """A figure's name with its declared direction, e.g. ``fid (lower better)``."""
    declared = figure_spec(metric.split(" [")[0])
    if declared is None or declared.is_count:
        return metric
    return f"{metric} ({declared.direction} better)"


def _short_model(value) -> str:
    """A model by its short name (the last part of a path), not a machine path."""
    text = _text(value)
    return ", ".join(Path(v.strip()).name or v for v in text.split(",")) if "/" in text else text


RUN_COLUMNS = ("backend", "model", "scheduler", "steps", "guidance", "samples", "kept",
               "samples_per_second")
"""The descriptors of a generation run the comparison shows (``run_descriptors``)."""


def _key_table(table: pd.DataFrame) -> pd.DataFrame:
    """Dataset, model (short name), kept share and the figures declared ``key``: value and
    interval, marked best / tie."""
    out = pd.DataFrame(index=table.index)
    if "model" in table:
        out["model"] = [_short_model(v) for v in table["model"]]
    if "kept" in table and "samples" in table:
        out["kept"] = [f"{int(k)} of {int(n)}" if pd.notna(k) and pd.notna(n) else ""
                       for k, n in zip(table["kept"], table["samples"])]
    for column in table.columns:
        declared = figure_spec(column)
        if declared is None or not declared.key:
            continue
        out[_named(column)] = [
            _Marked(f"{format_number(c.value)} {_interval(c.ci_low, c.ci_high)}".strip(), c.mark)
            if isinstance(c, Cell) else _Marked("") for c in table[column]]
    return out.reset_index()


def _runs(table: pd.DataFrame) -> pd.DataFrame:
    columns = [c for c in RUN_COLUMNS if c in table]
    out = table[columns].copy()
    if "model" in out:
        out["model"] = [_short_model(v) for v in out["model"]]
    return out.reset_index()


def _by_metric(table: pd.DataFrame) -> pd.DataFrame:
    """Every figure of the comparison, one row per figure (named with its direction), one column
    per dataset: a few columns, however many figures."""
    metrics = [c for c in table.columns if c not in RUN_COLUMNS and c != "dataset"
               and any(isinstance(v, Cell) for v in table[c])]
    rows = []
    for column in metrics:
        declared = count_spec(column.split(" [")[0])
        cells = [(_Marked(count_text(c.value, declared.unit)) if declared else c)
                 if isinstance(c, Cell) else "" for c in table[column]]
        rows.append([_named(column), *cells])
    return pd.DataFrame(rows, columns=["figure", *table.index])


def _text(value) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return format_number(value)
    return str(value)


def _overall(report: _Report, name: str) -> pd.DataFrame:
    return report.metrics[(report.metrics["dataset"] == name) & (report.metrics["group"] == "all")]


# -- Markdown ---------------------------------------------------------------------------------

def _md_cell(value) -> str:
    mark = getattr(value, "mark", "")
    text = _text(value) + (f" ({mark})" if isinstance(value, _Marked) and mark else "")
    return " ".join(html.escape(text, quote=False).replace("|", "\\|").split())


def markdown_table(table: pd.DataFrame) -> str:
    """A GitHub-flavoured Markdown table; cells escaped (``<>&`` as entities, ``|``, newlines)."""
    lines = ["| " + " | ".join(_md_cell(c) for c in table.columns) + " |",
             "|" + "---|" * len(table.columns)]
    lines += ["| " + " | ".join(_md_cell(v) for v in row) + " |"
              for row in table.itertuples(index=False)]
    return "\n".join(lines)


def _md_text(text: str) -> str:
    return html.escape(text, quote=False)


def _md_segments(segments: Sequence[Segment]) -> str:
    return "".join(f"**{_md_text(t)}**" if hit else _md_text(t) for t, hit in segments)


def _md_headline(report: _Report) -> list[str]:
    out = []
    for line in report.headline:
        out.append(f"- {_md_segments(line.segments)}")
        out += [f"  - {_md_segments(item)}" for item in line.items]
    return out


def _md_section(section: Section) -> list[str]:
    out = [f"## {_md_text(section.title)}", ""]
    if section.text:
        out += [_md_text(section.text), ""]
    if section.verdicts:
        out += [f"- {_md_segments([(v.text, v.flagged)])}" for v in section.verdicts] + [""]
    if section.table is not None:
        out += [markdown_table(section.table), ""]
    if section.images:
        sounds = sum(p.audio is not None for p in section.images)
        out += [f"({len(section.images)} figure(s)"
                + (f", {sounds} with an audio player," if sounds else "")
                + " in report.html)", ""]
    return out


def _md_dataset(report: _Report, name: str) -> list[str]:
    rows = _overall(report, name)
    part = next((p for p in report.parts if p.name == name), None)
    if rows.empty and not (part and part.overview):
        return []
    out = [f"## {_md_text(str(name))}", ""]
    if part and part.overview:
        out += [", ".join(f"{_md_text(k)}: {_md_text(_text(v))}"
                          for k, v in part.overview.items()), ""]
    if len(rows):
        out += [markdown_table(_figures(rows, full=False)), ""]
    players = [p.caption for p in (part.pictures if part else []) if p.audio is not None]
    if players:
        out += [f"{len(players)} audio player(s) in report.html: "
                + "; ".join(_md_text(c) for c in players), ""]
    return out


def _markdown(report: _Report) -> str:
    """summary.md: the title and the headline first (``synthmill run`` prints what comes before
    the first "## " heading), then the key figures and the detail."""
    out = [f"# {_md_text(report.title)}", ""] + _md_headline(report) + [""]
    if report.key is not None:
        out += ["## Key figures", "", markdown_table(report.key), ""]
    out += ["## Run", ""]
    out += [f"- **{_md_text(k)}**: {_md_text(str(v))}" for k, v in report.header.items()]
    out += ["", "## How to read this", ""] + [p + "\n" for p in report.how_to_read()]
    warnings = report.warnings
    if len(warnings):
        out += ["## Warnings", "", markdown_table(warnings), ""]
    if report.comparison is not None:
        out += ["## Comparison", "", markdown_table(_runs(report.comparison)), "",
                markdown_table(_by_metric(report.comparison)), ""]
    out += [line for s in report.sections if s.with_figures for line in _md_section(s)]
    for name in dict.fromkeys(report.metrics["dataset"]):
        out += _md_dataset(report, name)
    out += [line for s in report.sections if not s.with_figures for line in _md_section(s)]
    out += ["Per-group figures, plots and samples: report.html; every figure: metrics.csv.", ""]
    return "\n".join(out)


# -- HTML -------------------------------------------------------------------------------------

def _e(value) -> str:
    return html.escape(_text(value), quote=True)


def html_table(table: pd.DataFrame) -> str:
    """An escaped HTML table; cells marked best / tie (``Cell``) get that CSS class."""
    head = "".join(f"<th>{_e(c)}</th>" for c in table.columns)
    body = []
    for row in table.itertuples(index=False):
        cells = []
        for v in row:
            mark = getattr(v, "mark", "") if isinstance(v, (Cell, _Marked)) else ""
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
        style = f' style="grid-template-columns: repeat({int(columns)}, minmax(0, max-content))"'
    return f'<div class="{cls}"{style}>{"".join(_figure(p) for p in pictures)}</div>'


def _paragraphs(text: str) -> str:
    return "".join(f"<p>{_e(p.strip())}</p>" for p in text.split("\n\n") if p.strip())


def _html_segments(segments: Sequence[Segment]) -> str:
    return "".join(f'<strong class="flagged">{_e(t)}</strong>' if hit else _e(t)
                   for t, hit in segments)


def _html_headline(report: _Report) -> str:
    items = []
    for line in report.headline:
        sub = "".join(f"<li>{_html_segments(i)}</li>" for i in line.items)
        items.append(f"<li>{_html_segments(line.segments)}"
                     + (f"<ul>{sub}</ul>" if sub else "") + "</li>")
    return f'<section id="headline"><ul>{"".join(items)}</ul></section>' if items else ""


def _html_verdicts(verdicts: Sequence[Verdict]) -> str:
    if not verdicts:
        return ""
    flagged = ' class="flagged"'
    rows = "".join(f"<li{flagged if v.flagged else ''}>{_e(v.text)}</li>" for v in verdicts)
    return f'<ul class="verdicts">{rows}</ul>'


FOLD_ROWS = 12
"""A section's table longer than this is folded under its pictures (``<details>``)."""


def _html_section(anchor: str, s: Section) -> str:
    """Text, verdicts, pictures, then the table (folded when long)."""
    table = html_table(s.table) if s.table is not None else ""
    if table and len(s.table) > FOLD_ROWS:
        table = f"<details><summary>Table ({len(s.table)} rows)</summary>{table}</details>"
    return (f'<section id="{anchor}"><h2>{_e(s.title)}</h2>' + _paragraphs(s.text)
            + _html_verdicts(s.verdicts)
            + (_pictures(s.images, s.columns) if s.images else "") + table + "</section>")


def _html_dataset(report: _Report, part: _DatasetPart, anchor: str) -> str:
    rows = _overall(report, part.name)
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


def _html_top(report: _Report) -> list[tuple[str, str, str]]:
    """(anchor, heading, body) of the parts before the charts: key figures, comparison, run,
    how to read this, warnings; a part with nothing to show is left out."""
    parts = []
    if report.key is not None:
        legend = ("<p>Green: the best value of a figure; light green: a tie with it (intervals "
                  "overlap). Every figure, with N: Comparison below.</p>"
                  if report.comparison is not None else "")
        parts.append(("key", "Key figures", html_table(report.key) + legend))
    if report.comparison is not None:
        parts.append(("comparison", "Comparison",
                      html_table(_runs(report.comparison))
                      + "<details><summary>Every figure, side by side</summary>"
                      + html_table(_by_metric(report.comparison)) + "</details>"))
    header = "".join(f"<tr><th>{_e(k)}</th><td>{_e(v)}</td></tr>" for k, v in report.header.items())
    parts.append(("run", "Run", f"<table>{header}</table>"))
    parts.append(("how", "How to read this", "".join(f"<p>{_e(p)}</p>"
                                                     for p in report.how_to_read())))
    warnings = report.warnings
    if len(warnings):
        parts.append(("warnings", "Warnings",
                      "<p>Each distinct warning once, with the figures it concerns.</p>"
                      + html_table(warnings)))
    return parts


def _html(report: _Report) -> str:
    top = _html_top(report)
    charts = [("charts", "Charts", _pictures(report.charts, columns=2))] if report.charts else []
    sections = [(f"section-{i}", s) for i, s in enumerate(report.sections)]
    datasets = [(f"dataset-{i}", p) for i, p in enumerate(report.parts)]
    nav = [(a, t) for a, t, _ in top + charts]
    nav += [(a, s.title) for a, s in sections if s.with_figures]
    nav += [(a, p.name) for a, p in datasets]
    nav += [(a, s.title) for a, s in sections if not s.with_figures]
    nav += [("all-figures", "All figures")]
    body = [f"<h1>{_e(report.title)}</h1>", _html_headline(report)]
    body += [f'<section id="{a}"><h2>{_e(t)}</h2>{b}</section>' for a, t, b in top[:1]]
    body.append("<nav>" + "".join(f'<a href="#{a}">{_e(t)}</a>' for a, t in nav) + "</nav>")
    body += [f'<section id="{a}"><h2>{_e(t)}</h2>{b}</section>' for a, t, b in top[1:] + charts]
    body += [_html_section(anchor, s) for anchor, s in sections if s.with_figures]
    body += [_html_dataset(report, part, anchor) for anchor, part in datasets]
    body += [_html_section(anchor, s) for anchor, s in sections if not s.with_figures]
    body.append('<section id="all-figures"><h2>All figures (metrics.csv)</h2><details><summary>'
                f"Every row of metrics.csv ({len(report.metrics)}), with its details</summary>"
                + html_table(_figures(report.metrics, full=True)) + "</details></section>")
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{_e(report.title)}</title><style>{_CSS}</style></head><body>"
            + "\n".join(b for b in body if b) + "</body></html>\n")
