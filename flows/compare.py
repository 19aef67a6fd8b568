"""Comparison flow: several datasets (generators, samplers, configs) against one reference, in one
report whose comparison table marks the best value per metric and ties within intervals."""

from __future__ import annotations

from pathlib import Path

from prefect import flow

from augment.core.versions import dataset_label
from evaluation.config import EvalSpec, ReportSpec
from flows.evaluate import evaluate_task, publish, report_task


@flow(name="compare-datasets", log_prints=True)
def compare_flow(datasets: list[str], spec: EvalSpec, reference: str | None, out_dir: str,
                 report_spec: ReportSpec, run_info: dict) -> dict:
    names = [dataset_label(d) for d in datasets]
    if len(set(names)) != len(names):
        raise ValueError(f"datasets to compare need distinct folder names, got {names}")
    parts = [evaluate_task(d, spec, reference, str(Path(out_dir) / name))
             for d, name in zip(datasets, names)]
    paths = report_task(parts, datasets, out_dir, report_spec, run_info)
    publish(out_dir, "comparison")
    return {"metrics": str(Path(out_dir) / "metrics.csv"), **paths}
