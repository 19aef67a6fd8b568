"""The headline of a report, what a person reads in ten seconds: which dataset is better on what
(only where intervals are apart, in the direction each figure's declaration gives; overlaps are
ties), how much of each dataset was kept, the audits' verdicts, memorized samples, unreadable
files, and each distinct warning once. Rendered by ``evaluation.report`` as HTML and Markdown."""

from __future__ import annotations

import itertools
import math
import re
from dataclasses import dataclass, field
from typing import Mapping, Sequence

import pandas as pd

from evaluation.compare import intervals_overlap
from evaluation.registry import count_spec, figure_spec


@dataclass
class Verdict:
    """One group's verdict in an audit of ``dataset``: ``text`` says it; a ``flagged`` group is
    shown in red, in the headline and its section, and outlined in red on the charts."""

    dataset: str
    group: str
    flagged: bool
    text: str


Segment = tuple[str, bool]
"""A piece of a headline line: its text, and whether it is flagged (red in report.html, bold in
summary.md)."""


@dataclass
class HeadlineLine:
    """One line of the headline, with sub-lines (a comparison's wins, ties, ...)."""

    segments: list[Segment]
    items: list[list[Segment]] = field(default_factory=list)


def count_text(value: float, unit: str) -> str:
    """A count with its unit: "0 files", "1 file"."""
    if not math.isfinite(value):
        return "n/a"
    n = int(round(value))
    return f"{n} {unit[:-1] if n == 1 and unit.endswith('s') else unit}".strip()


def distinct_warnings(metrics: pd.DataFrame) -> pd.DataFrame:
    """Each distinct warning of ``metrics`` (a ``WARNING`` or ``skipped`` clause of the details;
    a sample count ``n=7`` in it moves to where it applies) once: the warning, how many figures
    carry it, and where (dataset and metric: groups)."""
    found: dict[str, dict[tuple[str, str], list[str]]] = {}
    for r in metrics.itertuples():
        text = r.details if isinstance(r.details, str) else ""
        if not re.search("WARNING|skipped", text, re.IGNORECASE):
            continue
        clauses = [c.strip() for c in text.split(";")
                   if re.match(r"(WARNING|skipped)", c.strip(), re.IGNORECASE)] or [text]
        for clause in clauses:
            where = found.setdefault(re.sub(r"\bn=\d+", "n", clause), {})
            n = re.search(r"\bn=\d+", clause)
            where.setdefault((r.dataset, r.metric), []).append(
                f"{r.group} ({n.group(0)})" if n else str(r.group))
    return pd.DataFrame(
        [{"warning": w, "figures": sum(len(g) for g in where.values()),
          "where": "; ".join(f"{d} {m}: {', '.join(g)}" for (d, m), g in where.items())}
         for w, where in found.items()], columns=["warning", "figures", "where"])


@dataclass
class PairOutcome:
    """How datasets ``a`` and ``b`` compare on the overall figures both have from one
    ``extractor``: ``wins[name]``, the figures where that dataset's interval lies wholly on the
    better side of the other's (the direction its declaration gives); ``ties``, the figures whose
    intervals overlap (this evaluation cannot rank them); ``unranked``, the figures that lack an
    interval or a declared direction. Counts (``plot`` "count") are not ranked at all."""

    a: str
    b: str
    extractor: str
    wins: dict[str, list[str]]
    ties: list[str]
    unranked: list[str]


def compare_pairs(metrics: pd.DataFrame) -> list[PairOutcome]:
    """``PairOutcome`` of every two datasets of ``metrics`` (metrics.csv rows) measured by the same
    extractor, on their ``group`` "all" figures."""
    rows = metrics[metrics["group"] == "all"]
    out = []
    for extractor, same in rows.groupby("extractor", sort=False, dropna=False):
        datasets = list(dict.fromkeys(same["dataset"]))
        for a, b in itertools.combinations(datasets, 2):
            out.append(_pair_outcome(same, a, b, str(extractor)))
    return out


def _pair_outcome(rows: pd.DataFrame, a: str, b: str, extractor: str) -> PairOutcome:
    outcome = PairOutcome(a, b, extractor, {a: [], b: []}, [], [])
    by = {(r.dataset, r.metric): r for r in rows.itertuples()}
    for metric in dict.fromkeys(rows["metric"]):
        declared = figure_spec(metric)
        missing = (a, metric) not in by or (b, metric) not in by
        if missing or (declared is not None and declared.is_count):
            continue
        ra, rb = by[(a, metric)], by[(b, metric)]
        higher = declared.higher_is_better if declared else None
        bounds = [float(x) for x in (ra.value, ra.ci_low, ra.ci_high, rb.value, rb.ci_low,
                                     rb.ci_high)]
        if higher is None or not all(math.isfinite(x) for x in bounds):
            outcome.unranked.append(metric)
        elif intervals_overlap(ra.ci_low, ra.ci_high, rb.ci_low, rb.ci_high):
            outcome.ties.append(metric)
        else:
            outcome.wins[a if (ra.value > rb.value) == higher else b].append(metric)
    return outcome


def _listing(names: Sequence[str]) -> str:
    return ", ".join(names) if names else "none"


def _comparison_lines(compared: pd.DataFrame) -> list[HeadlineLine]:
    lines = []
    for pair in compare_pairs(compared):
        if not (pair.ties or any(pair.wins.values())):
            continue
        items = [[(f"better for {name} (intervals apart): {_listing(won)}", False)]
                 for name, won in pair.wins.items()]
        items.append([(f"tie (intervals overlap, cannot rank): {_listing(pair.ties)}", False)])
        if pair.unranked:
            items.append([(f"not ranked (no interval): {_listing(pair.unranked)}", False)])
        lines.append(HeadlineLine([(f"{pair.a} vs {pair.b} ({pair.extractor} figures):", False)],
                                  items))
    return lines


def _kept_line(overviews: Mapping[str, dict]) -> list[HeadlineLine]:
    shares = []
    for name, counts in overviews.items():
        if not counts.get("samples"):
            continue
        n, kept = int(counts["samples"]), int(counts.get("kept", 0))
        text = f"{name} {kept} of {n} kept ({kept / n:.0%})"
        for key in ("dropped", "failed"):
            if counts.get(key):
                text += f", {int(counts[key])} {key} ({int(counts[key]) / n:.0%})"
        shares.append(text)
    return [HeadlineLine([("Verification: " + "; ".join(shares), False)])] if shares else []


def _audit_lines(verdicts: Sequence[Verdict]) -> list[HeadlineLine]:
    lines = []
    for dataset in dict.fromkeys(v.dataset for v in verdicts):
        mine = [v for v in verdicts if v.dataset == dataset]
        hit = [v.group for v in mine if v.flagged]
        if not hit:
            lines.append(HeadlineLine([(f"Bias audit {dataset}: no group skewed "
                                        f"({len(mine)} groups)", False)]))
            continue
        segments: list[Segment] = [(f"Bias audit {dataset}: {len(hit)} of {len(mine)} groups "
                                    "SKEWED: ", False)]
        for i, group in enumerate(hit):
            segments += [(", ", False)] if i else []
            segments.append((group, True))
        lines.append(HeadlineLine(segments))
    return lines


def _memorization_line(compared: pd.DataFrame) -> list[HeadlineLine]:
    rows = compared[(compared["metric"] == "memorization_rate") & (compared["group"] == "all")]
    if rows.empty:
        return []
    segments: list[Segment] = [("Memorization (closer to a reference sample than the calibrated "
                                "line): ", False)]
    for i, r in enumerate(rows.itertuples()):
        count = round(float(r.value) * int(r.n)) if math.isfinite(float(r.value)) else None
        text = f"{r.dataset} {'n/a' if count is None else count} of {int(r.n)}"
        segments += [(", ", False)] if i else []
        segments.append((text, bool(count)))
    return [HeadlineLine(segments)]


def _count_lines(compared: pd.DataFrame) -> list[HeadlineLine]:
    lines = []
    for r in compared[compared["group"] == "all"].itertuples():
        declared = count_spec(r.metric)
        if declared and float(r.value) > 0:
            count = count_text(float(r.value), declared.unit)
            lines.append(HeadlineLine([(f"{r.dataset}: {r.metric} {count} (excluded from the "
                                        "figures)", True)]))
    return lines


def headline(compared: pd.DataFrame, overviews: Mapping[str, dict], verdicts: Sequence[Verdict],
             warnings: pd.DataFrame) -> list[HeadlineLine]:
    """What a person should read first: which dataset is better on what (by intervals: an overlap
    is a tie), the share of each dataset kept (``overviews``: each dataset's sample counts), the
    audits' verdicts (flagged groups), memorized samples, unreadable files and how many warnings
    (``distinct_warnings``)."""
    lines = (_comparison_lines(compared) + _kept_line(overviews) + _audit_lines(verdicts)
             + _memorization_line(compared) + _count_lines(compared))
    if len(warnings):
        lines.append(HeadlineLine([(f"Warnings: {len(warnings)} distinct, on "
                                    f"{int(warnings['figures'].sum())} figures (see Warnings)",
                                    False)]))
    return lines
