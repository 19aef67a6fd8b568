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

PLOTS = ("bars", "none")
"""``bars``: a bar per dataset (and group), its interval as whiskers; ``none``: not charted."""


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
    """What a figure name means: ``higher_is_better`` (its direction), ``unit`` ("" when it has
    none) and ``plot`` (one of ``PLOTS``)."""

    name: str
    higher_is_better: bool
    unit: str = ""
    plot: str = "bars"

    def __post_init__(self):
        if self.plot not in PLOTS:
            raise ValueError(f"figure {self.name}: plot must be one of {PLOTS}, got {self.plot!r}")

    @property
    def direction(self) -> str:
        return "higher" if self.higher_is_better else "lower"
