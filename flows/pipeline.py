"""The main job: generate (main dataset, variants to compare, reference, audit set) -> evaluate ->
audit -> report. Each step is a plain library call; this module only wires them."""

from __future__ import annotations

from pathlib import Path

from prefect import flow

from augment.config import RunConfig, audit_job, variant_jobs
from augment.image.generate import dataset_dir
from flows.evaluate import audit_task, evaluate_task, publish, report_task
from flows.generate import generate_image_dataset
from flows.runners import make_task_runner


@flow(name="synthmill-pipeline", log_prints=True)
def pipeline(config: RunConfig, report_dir: str, run_info: dict) -> dict:
    """Returns {"generate": [summaries], "report": {metrics, summary, html} or None}."""
    generate = generate_image_dataset.with_options(task_runner=make_task_runner(config.runner))
    jobs = variant_jobs(config)
    extra = [j for j in (config.reference_job, audit_job(config)) if j is not None]
    summaries = [generate(config.model_copy(update={"image": job})) for job in jobs + extra]
    result = {"generate": summaries, "report": None}
    if config.evaluate is None:
        return result
    reference = config.evaluate.reference or (
        str(dataset_dir(config.reference_job, config.out)) if config.reference_job else None)
    datasets = [str(dataset_dir(job, config.out)) for job in jobs]
    parts = [evaluate_task(d, config.evaluate, reference, str(Path(report_dir) / Path(d).name))
             for d in datasets]
    audit = audit_job(config)
    if audit is not None:
        audit_dir = str(dataset_dir(audit, config.out))
        parts.append(audit_task(audit_dir, config.audit, config.evaluate,
                                str(Path(report_dir) / Path(audit_dir).name)))
    result["report"] = report_task(parts, datasets, report_dir, config.report, run_info)
    publish(report_dir, "pipeline")
    return result
