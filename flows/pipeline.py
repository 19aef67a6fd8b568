"""The main job: generate every job of the run (datasets to compare, the reference, audit sets)
-> evaluate -> audit -> report. Each step is a plain library call; this module only wires them."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from prefect import flow

from augment.core.shards import dataset_dir
from augment.core.versions import resolve_dataset
from evaluation.registry import MODALITIES as EVALUATED
from flows.config import RunConfig
from flows.evaluate import audit_task, evaluate_task, publish, report_task
from flows.generate import generate_dataset_flow, generate_version_flow
from flows.runners import make_task_runner

Datasets = Literal["generate", "version", "latest"]


@flow(name="synthmill-pipeline", log_prints=True)
def pipeline(config: RunConfig, report_dir: str, run_info: dict,
             datasets: Datasets = "generate", reseed: bool = True) -> dict:
    """Returns {"generate": [summaries], "report": {metrics, summary, html} or None}.

    ``datasets``: ``generate`` makes (or resumes) each job's dataset in ``out/<job>``;
    ``version`` makes a new version of each (``out/<job>/vNNNN``, ``latest`` moved after it);
    ``latest`` generates nothing and evaluates the version ``latest`` points at."""
    plain = (generate_dataset_flow.with_options(task_runner=make_task_runner(config.runner))
             if datasets == "generate" else None)  # a version run makes its own runner
    summaries, folders = [], {}
    for job in config.jobs:
        if datasets == "latest":
            folders[job.name] = str(resolve_dataset(dataset_dir(job, config.out)))
            continue
        if datasets == "version":
            summary = generate_version_flow(job, config.out, reseed, config.runner)
        else:
            summary = plain(job, config.out, runner=config.runner)
        summaries.append(summary)
        folders[job.name] = summary["path"]
    result = {"generate": summaries, "report": None}
    if config.evaluate is None:
        return result
    parts, compared = [], []
    for job in config.named("compare"):
        if job.modality not in EVALUATED:
            print(f"{job.name}: no evaluation of {job.modality} datasets yet; generated only")
            continue
        references = config.named("reference", job.modality)
        reference = config.evaluate.reference_for(job.modality) or (
            folders[references[0].name] if references else None)
        compared.append(folders[job.name])
        parts.append(evaluate_task(compared[-1], config.evaluate, reference,
                                   str(Path(report_dir) / job.name)))
    for audit in config.audits:
        parts.append(audit_task(folders[audit.dataset], audit, config.evaluate,
                                str(Path(report_dir) / audit.dataset)))
    result["report"] = report_task(parts, compared, report_dir, config.report, run_info)
    publish(report_dir, "pipeline")
    return result
