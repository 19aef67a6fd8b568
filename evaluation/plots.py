"""Report figures as PNG bytes: sample grids, metric bars, class balance, attribute shares.

Figures are built on ``matplotlib.figure.Figure`` directly (Agg canvas, no pyplot), so plotting
leaves no global state behind and is safe from worker threads. Every text drawn from data (class
names, dataset names, attribute values) goes through ``_plain``: a ``$`` in a name must not be read
as mathtext.
"""

from __future__ import annotations

import io
import json
import logging
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
from matplotlib import colors as mcolors
from matplotlib import patheffects
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle
from PIL import Image

from augment.image.dataset import (SampleReadError, exported_rows, mask_xyxy, read_image, read_label_map,
                             visible_instances)
from augment.image.world import PALETTE
from evaluation.compare import higher_is_better

log = logging.getLogger(__name__)

_DPI = 100
_HIGHLIGHT = "#ffd400"  # the row's class; over a black stroke, so it reads on any colour
_STROKE = [patheffects.withStroke(linewidth=2.2, foreground="black")]


def _png(fig: Figure) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=_DPI, bbox_inches="tight")
    return buf.getvalue()


def _plain(text) -> str:
    """``text`` drawn literally: an escaped ``$`` never starts mathtext, and prints as ``$``."""
    return str(text).replace("$", r"\$")


def _labels(texts: Sequence) -> list[str]:
    return [_plain(t) for t in texts]


def grid_samples(dataset_dir: str | Path, per_class: int = 4,
                 classes: Sequence[str] | None = None) -> dict[str, list[dict]]:
    """The kept manifest rows ``sample_grid`` shows: per class, the first ``per_class`` samples
    (by id) holding an instance of it. ``classes`` defaults to the dataset's categories."""
    root = Path(dataset_dir)
    if per_class < 1:
        raise ValueError(f"per_class must be >= 1, got {per_class}")
    categories = json.loads((root / "dataset.json").read_text())["categories"]
    unknown = sorted(set(classes or []) - set(categories))
    if unknown:
        raise ValueError(f"{root}: classes {unknown} are not among its categories {categories}")
    rows = exported_rows(pd.read_parquet(root / "manifest.parquet"))
    if not rows:
        raise ValueError(f"{root}: no kept samples to show")
    picked: dict[str, list[dict]] = {c: [] for c in (classes or categories)}
    for row in rows:
        present = {inst["category"] for inst in json.loads(row["instances"])}
        for name, chosen in picked.items():
            if name in present and len(chosen) < per_class:
                chosen.append(row)
    return picked


def _draw_sample(ax, root: Path, row: dict, highlight: str, outlines: bool) -> None:
    """Image with instance outlines and boxes; the highlighted class in bold, others thin."""
    image = read_image(root, row)  # (H, W, 3) uint8
    instance_map = read_label_map(root, row, "instance_mask", image.shape[:2])
    instances = json.loads(row["instances"])
    ax.imshow(image, interpolation="nearest")
    for k in visible_instances(instance_map, len(instances), row["id"]):
        mask = instance_map == k + 1  # (H, W) bool
        mine = instances[k]["category"] == highlight
        colour, width = (_HIGHLIGHT, 1.0) if mine else ("white", 0.6)
        effects = _STROKE if mine else []
        if outlines:
            cs = ax.contour(mask.astype(float), levels=[0.5], colors=[colour], linewidths=width)
            cs.set(path_effects=effects)
        if mine:
            x0, y0, x1, y1 = mask_xyxy(mask)
            # pixel k covers [k - 0.5, k + 0.5] in imshow coordinates
            ax.add_patch(Rectangle((x0 - 0.5, y0 - 0.5), x1 - x0, y1 - y0, fill=False,
                                   edgecolor=colour, linewidth=width, path_effects=effects))


def sample_grid(dataset_dir: str | Path, per_class: int = 4,
                classes: Sequence[str] | None = None) -> bytes:
    """PNG of kept samples, one row per class (``grid_samples``), the class name as row label.

    Instances of the row's class are outlined (from ``masks/instance``) and boxed in yellow; other
    instances get a thin white outline. Datasets labelled with boxes only get boxes. A sample whose
    files cannot be read shows as an "unreadable" cell, so the grid still matches its caption list.
    """
    root = Path(dataset_dir)
    outlines = json.loads((root / "dataset.json").read_text()).get("labels", "masks") == "masks"
    picked = grid_samples(root, per_class, classes)
    n_rows, n_cols = len(picked), per_class
    fig = Figure(figsize=(1.4 * n_cols + 1.0, 1.4 * n_rows))
    axes = fig.subplots(n_rows, n_cols, squeeze=False)
    for r, (name, rows) in enumerate(picked.items()):
        axes[r, 0].text(-0.08, 0.5, _plain(name), transform=axes[r, 0].transAxes, ha="right",
                        va="center", fontsize=10)
        for c in range(n_cols):
            ax = axes[r, c]
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_frame_on(False)
            if c >= len(rows):
                continue
            try:
                _draw_sample(ax, root, rows[c], name, outlines)
                ax.set_title(f"#{rows[c]['id']}", fontsize=7, pad=2)
            except (SampleReadError, ValueError) as exc:
                log.warning("sample grid of %s: %s", root, exc)
                ax.text(0.5, 0.5, f"#{rows[c]['id']}\nunreadable", ha="center", va="center",
                        fontsize=7, transform=ax.transAxes)
        if not rows:
            axes[r, 0].text(0.5, 0.5, "no kept sample", ha="center", va="center", fontsize=8,
                            transform=axes[r, 0].transAxes)
    fig.subplots_adjust(wspace=0.05, hspace=0.25)
    return _png(fig)


def image_png(path: str | Path, size: int = 128) -> bytes:
    """Any image file as PNG bytes, its longer side scaled to ``size`` (nearest-neighbour when
    enlarging, so small samples stay sharp): for report sections such as memorization pairs."""
    with Image.open(path) as im:
        im = im.convert("RGB")
        scale = size / max(im.size)
        resample = Image.NEAREST if scale > 1 else Image.LANCZOS
        im = im.resize((max(1, round(im.width * scale)), max(1, round(im.height * scale))),
                       resample)
    buf = io.BytesIO()
    im.save(buf, format="PNG")
    return buf.getvalue()


def _whiskers(ax, x: np.ndarray, values: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> None:
    """Interval whiskers where the interval is known (a NaN interval draws nothing)."""
    ok = np.isfinite(values) & np.isfinite(lo) & np.isfinite(hi)
    if ok.any():
        yerr = np.vstack([values[ok] - lo[ok], hi[ok] - values[ok]]).clip(min=0)
        ax.errorbar(x[ok], values[ok], yerr=yerr, fmt="none", ecolor="black", capsize=3, lw=1)


def metric_bars(metrics: pd.DataFrame, metric: str, groups: Sequence[str] | None = None) -> bytes:
    """PNG of ``metric`` per dataset (and per group) with interval whiskers and N on each bar.

    ``metrics``: long-form rows (evaluate.COLUMNS). ``groups`` defaults to every group present.
    With one group the bars are the datasets; with several, groups sit on the x axis and each
    dataset has its own colour. A skipped figure (NaN) shows as "n/a".
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
        values = part["value"].to_numpy(float)
        ax.bar(pos, np.nan_to_num(values), width, color=f"C{i % 10}", label=_plain(dataset))
        high = part["ci_high"].to_numpy(float)
        _whiskers(ax, pos, values, part["ci_low"].to_numpy(float), high)
        # N above the whisker, where it cannot collide with it
        for x, v, top, n in zip(pos, values, np.fmax(values, high), part["n"].fillna(0)):
            ax.text(x, np.nan_to_num(top), f"N={int(n)}" if np.isfinite(v) else "n/a",
                    ha="center", va="bottom", fontsize=7)
    ax.set_xticks(np.arange(len(slots)), _labels(slots), rotation=20 if len(slots) > 3 else 0,
                  ha="right" if len(slots) > 3 else "center")
    direction = "higher" if higher_is_better(metric) else "lower"
    ax.set_title(_plain(f"{metric} ({direction} is better; whiskers: interval)"), fontsize=10)
    if not one_group:
        ax.legend(fontsize=7, frameon=False, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    ax.margins(y=0.15)
    ax.spines[["top", "right"]].set_visible(False)
    return _png(fig)


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
    return _png(fig)


def _value_colours(values: Sequence[str]) -> list:
    """The world's palette colour when every value is a colour name (CSS names as fallback),
    else the default cycle: a "red" bar should be red."""
    def named(v: str):
        if v in PALETTE:
            return tuple(c / 255 for c in PALETTE[v])
        return mcolors.CSS4_COLORS.get(v)

    found = [named(str(v)) for v in values]
    if all(c is not None for c in found):
        return found
    return [f"C{i % 10}" for i in range(len(values))]


def attribute_distribution(dist: pd.DataFrame, title: str = "attribute shares per group") -> bytes:
    """PNG of attribute shares per group, grouped bars, with the target share as a black tick.

    ``dist`` has one row per (group, attribute value): columns ``group``, ``value`` (e.g. "red"),
    ``share`` in [0, 1]; optional ``ci_low``/``ci_high`` (whiskers) and ``target`` (expected share).
    """
    missing = {"group", "value", "share"} - set(dist.columns)
    if missing:
        raise ValueError(f"attribute distribution lacks columns {sorted(missing)}")
    groups = list(dict.fromkeys(dist["group"]))
    values = list(dict.fromkeys(dist["value"]))
    width = 0.8 / len(values)
    fig = Figure(figsize=(max(4.5, 0.25 * len(dist) + 2.0), 3.2))
    ax = fig.subplots()
    for j, (value, colour) in enumerate(zip(values, _value_colours(values))):
        part = dist[dist["value"] == value].set_index("group").reindex(groups)
        x = np.arange(len(groups)) + (j - (len(values) - 1) / 2) * width
        share = part["share"].to_numpy(float)
        ax.bar(x, np.nan_to_num(share), width, color=colour, edgecolor="black", linewidth=0.4,
               label=_plain(value))
        if {"ci_low", "ci_high"} <= set(part.columns):
            _whiskers(ax, x, share, part["ci_low"].to_numpy(float), part["ci_high"].to_numpy(float))
        if "target" in part.columns:
            ax.hlines(part["target"].to_numpy(float), x - width / 2, x + width / 2, colors="black",
                      linewidth=1.6, label="target" if j == 0 else None)
    ax.set_xticks(np.arange(len(groups)), _labels(groups))
    ax.set_ylabel("share")
    ax.set_title(_plain(title), fontsize=10)
    ax.legend(fontsize=7, frameon=False, ncol=min(len(values) + 1, 7), loc="upper center",
              bbox_to_anchor=(0.5, -0.12))
    ax.spines[["top", "right"]].set_visible(False)
    return _png(fig)
