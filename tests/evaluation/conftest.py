"""Fixtures shared by the evaluation tests."""

from __future__ import annotations

import pytest

from evaluation.registry import Metric


@pytest.fixture
def written_figures(monkeypatch) -> dict[str, set[str]]:
    """metric name -> the figure names it wrote, filled as metrics run during the test."""
    written: dict[str, set[str]] = {}
    run = Metric.run

    def recording(self, inputs):
        figures = run(self, inputs)
        written[self.name] = {f.metric for f in figures}
        return figures

    monkeypatch.setattr(Metric, "run", recording)
    return written
