"""Comparison flow: several datasets (generators, samplers, configs) against one reference, in one
report whose comparison table marks the best value per metric and ties within intervals."""

from __future__ import annotations

from pathlib import Path

from prefect import flow

from evaluation.config import EvalSpec, ReportSpec
from evaluation.suite import report_names
from flows.evaluate import evaluate_task, publish, report_task


@flow(name="compare-datasets", log_prints=True)
def compare_flow(datasets: list[str], spec: EvalSpec, reference: str | None, out_dir: str,
                 report_spec: ReportSpec, run_info: dict) -> dict:
    parts = [evaluate_task(d, spec, reference, str(Path(out_dir) / name))
             for d, name in zip(datasets, report_names(datasets))]
    paths = report_task(parts, datasets, out_dir, report_spec, run_info)
    publish(out_dir, "comparison")
    return {"metrics": str(Path(out_dir) / "metrics.csv"), **paths}
