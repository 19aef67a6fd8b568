"""What a metric's compute function gets (``evaluation.registry.Metric.compute``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from evaluation.config import EvalSpec
from evaluation.features import SetFeatures
from evaluation.reference import Reference
from evaluation.sets import SampleSet


@dataclass
class MetricInputs:
    """The evaluated set, its features and the reference; no file is read from here on.

    ``extractors`` maps each need met (``evaluation.registry``) to the extractor whose arrays are
    in ``features.arrays``; their rows are the set's readable rows ``features.rows``. ``groups``:
    group -> positions among those rows ({} unless ``spec.per_group``). ``settings``: the metric's
    own settings model, if it has one. ``extras``: JSON-able data a metric leaves for the report by
    metric name (e.g. memorization's closest pairs), cached with the figures and written beside
    metrics.csv as ``<name>.json``.
    """

    spec: EvalSpec
    sample_set: SampleSet
    features: SetFeatures
    extractors: dict[str, str]
    reference: Reference | None
    groups: dict[str, list[int]]
    settings: Any = None
    extras: dict[str, Any] = field(default_factory=dict)

    def arrays(self, need: str = "fidelity") -> dict[str, np.ndarray]:
        """The arrays of the extractor that meets ``need``."""
        return self.features.arrays[self.extractors[need]]

    def targets(self, min_size: int = 0) -> list[tuple[str, np.ndarray]]:
        """("all", every row) and (group, its rows) for each group of at least ``min_size``
        members, sorted by name: what per-group figures are computed on."""
        n = len(self.features.rows)
        return [("all", np.arange(n))] + [(g, np.asarray(m)) for g, m in sorted(self.groups.items())
                                          if len(m) >= min_size]
