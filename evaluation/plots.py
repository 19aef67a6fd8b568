"""Report figures as PNG bytes: metric bars, class balance, attribute shares; the grid of samples
per class that each modality draws its samples into (``rows_per_class``, ``class_rows_figure``);
and ``Picture``, a figure as the report carries it (with the sound it shows, for audio samples).

Figures are built on ``matplotlib.figure.Figure`` directly (Agg canvas, no pyplot), so plotting
leaves no global state behind and is safe from worker threads. Every text drawn from data (class
names, dataset names, attribute values) goes through ``plain_text``: a ``$`` in a name must not be
read as mathtext. Pictures of samples are their modality's (``evaluation.image.pictures``,
``evaluation.audio.pictures``).
"""

from __future__ import annotations

import io
import json
import logging
from dataclasses import dataclass
from typing import Callable, Collection, Mapping, Sequence

import numpy as np
import pandas as pd
from matplotlib import colors as mcolors
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from evaluation.registry import figure_spec

log = logging.getLogger(__name__)

DPI = 100


@dataclass
class Picture:
    """A PNG figure with a caption (shown under it in report.html). ``audio``: the WAV bytes of
    the sound the figure shows (an audio sample), played inline by a player under the picture."""

    png: bytes
    caption: str = ""
    audio: bytes | None = None


def figure_png(fig: Figure) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, bbox_inches="tight")
    return buf.getvalue()


def plain_text(text) -> str:
    """``text`` drawn literally: an escaped ``$`` never starts mathtext, and prints as ``$``."""
    return str(text).replace("$", r"\$")


def rows_per_class(rows: Sequence[dict], classes: Sequence[str] | None, per_class: int,
                   categories: Sequence[str], source) -> dict[str, list[dict]]:
    """The samples a grid shows: per class, the first ``per_class`` of ``rows`` (kept manifest
    rows in the order given) whose ``instances`` (JSON records with a ``category``: objects or
    events) hold one of that class. ``classes`` (default: ``categories``) must be among the
    ``categories`` of the dataset at ``source``, and ``rows`` not empty; else ValueError."""
    unknown = sorted(set(classes or []) - set(categories))
    if unknown:
        raise ValueError(f"{source}: classes {unknown} are not among its categories "
                         f"{list(categories)}")
    if per_class < 1:
        raise ValueError(f"per_class must be >= 1, got {per_class}")
    if not rows:
        raise ValueError(f"{source}: no kept samples to show")
    picked: dict[str, list[dict]] = {c: [] for c in (classes or categories)}
    for row in rows:
        present = {inst["category"] for inst in json.loads(row["instances"])}
        for name, chosen in picked.items():
            if name in present and len(chosen) < per_class:
                chosen.append(row)
    return picked


def class_rows_figure(picked: Mapping[str, Sequence[dict]], per_class: int,
                      draw: Callable[[object, dict, str], None],
                      unreadable: tuple[type[Exception], ...], cell: tuple[float, float] = (1.4, 1.4),
                      empty: str = "no kept sample") -> Figure:
    """A grid of samples, one row per class of ``picked`` (``rows_per_class``), the class name as
    row label and each sample's id as its title; ``draw(ax, row, class)`` draws one sample (with
    its class highlighted). A sample ``draw`` cannot read (it raises one of ``unreadable``) is
    logged and shows as an "unreadable" cell, so the grid still matches the list of samples shown.
    ``cell``: inches per sample (width, height)."""
    n_rows, n_cols = len(picked), per_class
    fig = Figure(figsize=(cell[0] * n_cols + 1.0, cell[1] * n_rows))
    axes = fig.subplots(n_rows, n_cols, squeeze=False)
    for r, (name, rows) in enumerate(picked.items()):
        axes[r, 0].text(-0.08, 0.5, plain_text(name), transform=axes[r, 0].transAxes, ha="right",
                        va="center", fontsize=10)
        for c in range(n_cols):
            ax = axes[r, c]
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_frame_on(False)
            if c >= len(rows):
                continue
            try:
                draw(ax, rows[c], name)
                ax.set_title(f"#{rows[c]['id']}", fontsize=7, pad=2)
            except unreadable as exc:
                log.warning("grid of samples per class: %s", exc)
                ax.text(0.5, 0.5, f"#{rows[c]['id']}\nunreadable", ha="center", va="center",
                        fontsize=7, transform=ax.transAxes)
        if not rows:
            axes[r, 0].text(0.5, 0.5, plain_text(empty), ha="center", va="center", fontsize=8,
                            transform=axes[r, 0].transAxes)
    fig.subplots_adjust(wspace=0.05, hspace=0.3)
    return fig


def _labels(texts: Sequence) -> list[str]:
    return [plain_text(t) for t in texts]


def _finite_interval(values: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    return np.isfinite(values) & np.isfinite(lo) & np.isfinite(hi)


def _whiskers(ax, x: np.ndarray, values: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> None:
    """Interval whiskers where the interval is known (a NaN interval draws nothing)."""
    ok = _finite_interval(values, lo, hi)
    if ok.any():
        yerr = np.vstack([values[ok] - lo[ok], hi[ok] - values[ok]]).clip(min=0)
        ax.errorbar(x[ok], values[ok], yerr=yerr, fmt="none", ecolor="black", capsize=3, lw=1)


def draws_whiskers(rows: pd.DataFrame) -> bool:
    """Whether ``metric_bars`` of these rows draws any interval whisker: a chart says "whiskers"
    only then."""
    return bool(_finite_interval(rows["value"].to_numpy(float), rows["ci_low"].to_numpy(float),
                                 rows["ci_high"].to_numpy(float)).any())


def metric_caption(rows: pd.DataFrame, metric: str) -> str:
    """What a chart of ``metric`` shows: its declared direction, and "whiskers: interval" when it
    draws one (``draws_whiskers``)."""
    declared = figure_spec(metric)
    notes = [f"{declared.direction} is better"] if declared else []
    notes += ["whiskers: interval"] if draws_whiskers(rows) else ["no intervals"]
    return f"{metric} ({'; '.join(notes)})"


FLAGGED = "#c0001a"
"""The colour of what an audit flagged, in charts and in report.html."""


def metric_bars(metrics: pd.DataFrame, metric: str, groups: Sequence[str] | None = None,
                flagged: Collection[tuple[str, str]] = ()) -> bytes:
    """PNG of ``metric`` per dataset (and per group) with interval whiskers where there are
    intervals and N on each bar; titled by ``metric_caption`` (direction as declared in
    ``evaluation.registry``), its unit as declared.

    ``metrics``: long-form rows (``evaluation.figures.COLUMNS``). ``groups`` defaults to every
    group present. ``flagged``: (dataset, group) pairs an audit flagged: their bars are outlined in
    red and their group's label is red.
    With one group the bars are the datasets; with several, groups sit on the x axis and each
    dataset has its own colour. A skipped figure (NaN) shows as "n/a"; a group a dataset has no
    row for shows nothing.
    """
    rows = metrics[metrics["metric"] == metric]
    if groups is not None:
        rows = rows[rows["group"].isin(groups)]
    if rows.empty:
        raise ValueError(f"no rows for metric {metric!r} (groups {groups})")
    datasets = list(dict.fromkeys(rows["dataset"]))
    group_names = list(dict.fromkeys(rows["group"]))
    one_group = len(group_names) == 1
    slots = datasets if one_group else group_names
    width = 0.8 / (1 if one_group else len(datasets))
    fig = Figure(figsize=(max(4.0, 0.45 * len(rows) + 2.0), 3.0))
    ax = fig.subplots()
    for i, dataset in enumerate(datasets):
        part = rows[rows["dataset"] == dataset].set_index("group").reindex(group_names)
        pos = (np.array([i], float) if one_group
               else np.arange(len(group_names)) + (i - (len(datasets) - 1) / 2) * width)
        present = part["metric"].notna().to_numpy()
        values = part["value"].to_numpy(float)
        marked = [(dataset, g) in flagged for g in group_names]
        ax.bar(pos[present], np.nan_to_num(values[present]), width, color=f"C{i % 10}",
               label=plain_text(dataset),
               edgecolor=[FLAGGED if m else "none" for m, p in zip(marked, present) if p],
               linewidth=[2.5 if m else 0 for m, p in zip(marked, present) if p])
        high = part["ci_high"].to_numpy(float)
        _whiskers(ax, pos, values, part["ci_low"].to_numpy(float), high)
        # N above the whisker, where it cannot collide with it
        for x, v, top, n, shown in zip(pos, values, np.fmax(values, high), part["n"], present):
            if shown:
                ax.text(x, np.nan_to_num(top), f"N={int(n)}" if np.isfinite(v) else "n/a",
                        ha="center", va="bottom", fontsize=7)
    long_names = len(slots) > 1 and sum(len(str(s)) for s in slots) > 8 * len(slots)
    crowded = len(slots) > 3 or long_names
    ax.set_xticks(np.arange(len(slots)), _labels(slots), rotation=20 if crowded else 0,
                  ha="right" if crowded else "center")
    flagged_slots = ({d for d, g in flagged if g == group_names[0]} if one_group
                     else {g for d, g in flagged if d in datasets})
    for label, slot in zip(ax.get_xticklabels(), slots):
        if slot in flagged_slots:
            label.set_color(FLAGGED)
            label.set_fontweight("bold")
    ax.set_title(plain_text(metric_caption(rows, metric)), fontsize=10)
    declared = figure_spec(metric)
    if declared and declared.unit:
        ax.set_ylabel(plain_text(declared.unit))
    if not one_group or flagged_slots:
        handles = [Patch(color=f"C{i % 10}", label=plain_text(d)) for i, d in enumerate(datasets)]
        handles += [Patch(facecolor="none", edgecolor=FLAGGED, linewidth=2.5,
                          label="flagged by its audit")] if flagged_slots else []
        ax.legend(handles=handles, fontsize=7, frameon=False, loc="upper left",
                  bbox_to_anchor=(1.0, 1.0))
    ax.margins(y=0.15)
    ax.spines[["top", "right"]].set_visible(False)
    return figure_png(fig)


def _shares(counts: dict[str, float]) -> dict[str, float]:
    total = float(sum(counts.values()))
    return {k: (v / total if total else 0.0) for k, v in counts.items()}


def class_balance(achieved: dict[str, float], requested: dict[str, float],
                  dropped: dict[str, float] | None = None) -> bytes:
    """PNG of achieved vs requested class frequencies (each normalised to shares), and, when
    ``dropped`` is given, the instances verification dropped per class (counts) beside it."""
    names = list(dict.fromkeys([*requested, *achieved]))
    got, want = _shares(achieved), _shares(requested)
    fig = Figure(figsize=(max(4.0, 0.6 * len(names) + 2.0) * (2 if dropped else 1), 3.0))
    axes = fig.subplots(1, 2 if dropped else 1, squeeze=False)[0]
    x = np.arange(len(names))
    ax = axes[0]
    ax.bar(x - 0.2, [got.get(n, 0.0) for n in names], 0.4, label="achieved (kept)", color="C0")
    if requested:
        ax.bar(x + 0.2, [want.get(n, 0.0) for n in names], 0.4, label="requested", color="C7")
    ax.set_ylabel("share of instances")
    ax.set_title("class balance", fontsize=10)
    ax.legend(fontsize=7, frameon=False)
    if dropped:
        axes[1].bar(x, [dropped.get(n, 0) for n in names], 0.6, color="C3")
        axes[1].set_ylabel("instances")
        axes[1].set_title("dropped by verification", fontsize=10)
    for ax in axes:
        ax.set_xticks(x, _labels(names), rotation=20 if len(names) > 4 else 0)
        ax.spines[["top", "right"]].set_visible(False)
    return figure_png(fig)


def _value_colours(values: Sequence[str], known: Mapping[str, Sequence[int]]) -> list:
    """The ``known`` RGB colour (0-255) of each value, or its CSS colour, when every value is a
    colour name; else the default cycle: a "red" bar should be red."""
    def named(v: str):
        if v in known:
            return tuple(c / 255 for c in known[v])
        return mcolors.CSS4_COLORS.get(v)

    found = [named(str(v)) for v in values]
    if all(c is not None for c in found):
        return found
    return [f"C{i % 10}" for i in range(len(values))]


def attribute_distribution(dist: pd.DataFrame, title: str = "attribute shares per group",
                           colours: Mapping[str, Sequence[int]] | None = None,
                           flagged: Collection[str] = ()) -> bytes:
    """PNG of attribute shares per group, grouped bars, with the target share as a black tick.

    ``dist`` has one row per (group, attribute value): columns ``group``, ``value`` (e.g. "red"),
    ``share`` in [0, 1]; optional ``ci_low``/``ci_high`` (whiskers) and ``target`` (expected share).
    ``colours``: RGB (0-255) to draw a value's bars in (e.g. the audit preset's palette).
    ``flagged``: groups the audit flagged: shaded red behind their bars, their label red and
    marked "FLAGGED".
    """
    missing = {"group", "value", "share"} - set(dist.columns)
    if missing:
        raise ValueError(f"attribute distribution lacks columns {sorted(missing)}")
    groups = list(dict.fromkeys(dist["group"]))
    values = list(dict.fromkeys(dist["value"]))
    width = 0.8 / len(values)
    fig = Figure(figsize=(max(4.5, 0.25 * len(dist) + 2.0), 3.2))
    ax = fig.subplots()
    for j, (value, colour) in enumerate(zip(values, _value_colours(values, colours or {}))):
        part = dist[dist["value"] == value].set_index("group").reindex(groups)
        x = np.arange(len(groups)) + (j - (len(values) - 1) / 2) * width
        share = part["share"].to_numpy(float)
        ax.bar(x, np.nan_to_num(share), width, color=colour, edgecolor="black", linewidth=0.4,
               label=plain_text(value))
        if {"ci_low", "ci_high"} <= set(part.columns):
            _whiskers(ax, x, share, part["ci_low"].to_numpy(float), part["ci_high"].to_numpy(float))
        if "target" in part.columns:
            ax.hlines(part["target"].to_numpy(float), x - width / 2, x + width / 2, colors="black",
                      linewidth=1.6, label="target" if j == 0 else None)
    ax.set_xticks(np.arange(len(groups)),
                  _labels([f"{g}\nFLAGGED" if g in flagged else g for g in groups]))
    for i, (label, group) in enumerate(zip(ax.get_xticklabels(), groups)):
        if group in flagged:
            ax.axvspan(i - 0.45, i + 0.45, color=FLAGGED, alpha=0.08, zorder=0, linewidth=0)
            label.set_color(FLAGGED)
            label.set_fontweight("bold")
    ax.set_ylabel("share")
    ax.set_title(plain_text(title), fontsize=10)
    ax.legend(fontsize=7, frameon=False, ncol=min(len(values) + 1, 7), loc="upper center",
              bbox_to_anchor=(0.5, -0.2 if flagged else -0.12))
    ax.spines[["top", "right"]].set_visible(False)
    return figure_png(fig)


def learning_curve(metrics: pd.DataFrame, figures: Sequence[str] = ("utility_miou",
                                                                     "utility_box_ap")) -> bytes:
    """PNG of a utility study: each figure against the real budget (log scale), one line per arm
    (``group`` ``arm@budget`` rows of one dataset) with its interval as a band; an arm that uses no
    real image (``synthetic``, budget 0) is a dashed horizontal line with its band."""
    fig = Figure(figsize=(5.0 * len(figures), 3.4))
    axes = np.atleast_1d(fig.subplots(1, len(figures)))
    for ax, metric in zip(axes, figures):
        rows = metrics[(metrics["metric"] == metric) & metrics["group"].str.contains("@")]
        parts = rows["group"].str.rsplit("@", n=1, expand=True)
        rows = rows.assign(arm=parts[0], budget=parts[1].astype(int))
        budgets = sorted(b for b in rows["budget"].unique() if b > 0)
        for i, (arm, part) in enumerate(rows.groupby("arm", sort=False)):
            part = part.sort_values("budget")
            colour = f"C{i % 10}"
            if (part["budget"] == 0).all():
                r = part.iloc[0]
                ax.axhline(r["value"], color=colour, ls="--", label=plain_text(f"{arm} (no real)"))
                ax.axhspan(r["ci_low"], r["ci_high"], color=colour, alpha=0.15)
                continue
            ax.plot(part["budget"], part["value"], marker="o", color=colour, label=plain_text(arm))
            ax.fill_between(part["budget"], part["ci_low"], part["ci_high"], color=colour,
                            alpha=0.2)
        if budgets:
            ax.set_xscale("log")
            ax.set_xticks(budgets, [str(b) for b in budgets])
            ax.minorticks_off()
        declared = figure_spec(metric)
        direction = f"{declared.direction} is better; " if declared else ""
        ax.set_title(plain_text(f"{metric} ({direction}bands: interval over seeds)"), fontsize=9)
        ax.set_xlabel("real training images")
        ax.spines[["top", "right"]].set_visible(False)
    axes[-1].legend(fontsize=7, frameon=False, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    fig.tight_layout()
    return figure_png(fig)
