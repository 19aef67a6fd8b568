"""What an evaluation reports: ``Figure``, one row of metrics.csv, and ``FigureSpec``, what a
figure's name means (which way is better, its unit, how the report plots it).

Each figure name is declared once, by the registry entry of the metric or audit that writes it
(``evaluation.registry``); the comparison table and the report's charts read it from there.
"""

from __future__ import annotations

from dataclasses import dataclass

COLUMNS = ["dataset", "reference", "metric", "value", "ci_low", "ci_high", "n", "extractor",
           "group", "details"]
"""The columns of metrics.csv, one row per ``Figure`` of one dataset."""

PLOTS = ("bars", "count", "none")
"""``bars``: a bar per dataset (and group), its interval as whiskers where it has one; ``count``: a
whole number of ``unit`` (unreadable files), shown in the tables as a count ("0 files"), never as a
chart or a rate; ``none``: not charted (its study draws its own chart)."""


@dataclass
class Figure:
    """One reported number: a row of metrics.csv."""

    metric: str
    value: float
    ci_low: float
    ci_high: float
    n: int
    group: str = "all"
    details: str = ""


@dataclass(frozen=True)
class FigureSpec:
    """What a figure name means: ``higher_is_better`` (its direction: the one place the
    comparison's marks, the charts' captions and the report's headline read it from), ``unit`` (""
    when it has none), ``plot`` (one of ``PLOTS``) and ``key``: shown in the report's key table."""

    name: str
    higher_is_better: bool
    unit: str = ""
    plot: str = "bars"
    key: bool = False

    def __post_init__(self):
        if self.plot not in PLOTS:
            raise ValueError(f"figure {self.name}: plot must be one of {PLOTS}, got {self.plot!r}")

    @property
    def is_count(self) -> bool:
        return self.plot == "count"

    @property
    def direction(self) -> str:
        return "higher" if self.higher_is_better else "lower"
