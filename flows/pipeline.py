"""The main job: generate every job of the run (datasets to compare, the reference, audit sets)
-> evaluate -> audit -> report. Each step is a plain library call; this module only wires them."""

from __future__ import annotations

from pathlib import Path

from prefect import flow

from augment.core.shards import dataset_dir
from evaluation.registry import MODALITIES as EVALUATED
from flows.config import RunConfig
from flows.evaluate import audit_task, evaluate_task, publish, report_task
from flows.generate import generate_dataset_flow
from flows.runners import make_task_runner


@flow(name="synthmill-pipeline", log_prints=True)
def pipeline(config: RunConfig, report_dir: str, run_info: dict) -> dict:
    """Returns {"generate": [summaries], "report": {metrics, summary, html} or None}."""
    generate = generate_dataset_flow.with_options(task_runner=make_task_runner(config.runner))
    summaries = [generate(job, config.out) for job in config.jobs]
    result = {"generate": summaries, "report": None}
    if config.evaluate is None:
        return result
    parts, datasets = [], []
    for job in config.named("compare"):
        if job.modality not in EVALUATED:
            print(f"{job.name}: no evaluation of {job.modality} datasets yet; generated only")
            continue
        references = config.named("reference", job.modality)
        reference = config.evaluate.reference_for(job.modality) or (
            str(dataset_dir(references[0], config.out)) if references else None)
        datasets.append(str(dataset_dir(job, config.out)))
        parts.append(evaluate_task(datasets[-1], config.evaluate, reference,
                                   str(Path(report_dir) / job.name)))
    for audit in config.audits:
        parts.append(audit_task(str(dataset_dir(config.job(audit.dataset), config.out)), audit,
                                config.evaluate, str(Path(report_dir) / audit.dataset)))
    result["report"] = report_task(parts, datasets, report_dir, config.report, run_info)
    publish(report_dir, "pipeline")
    return result
