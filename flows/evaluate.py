"""Evaluation flow: score a dataset against a reference, write metrics and the report, publish a
table artifact (artifacts live only in Prefect's database, so the files are always written too)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from prefect import flow, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact

from evaluation.config import AuditSpec, EvalSpec, ReportSpec
from evaluation.suite import audit_one, evaluate_one, report, report_names


@task(name="evaluate-dataset")
def evaluate_task(dataset: str, spec: EvalSpec, reference: str | None, out_dir: str) -> str:
    return str(evaluate_one(dataset, spec, reference, out_dir))


@task(name="bias-audit")
def audit_task(dataset: str, spec: AuditSpec, eval_spec: EvalSpec, out_dir: str) -> str:
    return str(audit_one(dataset, spec, eval_spec, out_dir))


@task(name="write-report")
def report_task(metrics_files: list[str], datasets: list[str], out_dir: str, spec: ReportSpec,
                run_info: dict) -> dict:
    paths = report(metrics_files, datasets, out_dir, spec, run_info)
    return {name: str(path) for name, path in paths.items()}


def publish(out_dir: str, key: str) -> None:
    """Table artifact of metrics.csv and a markdown artifact of summary.md."""
    table = pd.read_csv(Path(out_dir) / "metrics.csv").round(4).fillna("")
    create_table_artifact(table=table.to_dict(orient="records"), key=f"{key}-metrics",
                          description=f"figures of {out_dir}/metrics.csv")
    summary = Path(out_dir) / "summary.md"
    if summary.exists():
        create_markdown_artifact(summary.read_text(), key=f"{key}-summary")


@flow(name="evaluate-dataset", log_prints=True)
def evaluate_flow(dataset: str, spec: EvalSpec, reference: str | None, out_dir: str,
                  report_spec: ReportSpec, run_info: dict) -> dict:
    """Evaluate ``dataset``; returns the paths of metrics.csv, summary.md and report.html."""
    part = evaluate_task(dataset, spec, reference, str(Path(out_dir) / report_names([dataset])[0]))
    paths = report_task([part], [dataset], out_dir, report_spec, run_info)
    publish(out_dir, "evaluation")
    return {"metrics": str(Path(out_dir) / "metrics.csv"), **paths}
