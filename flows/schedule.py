"""Schedules: the flows ``synthmill serve`` deploys, and the deployments made from run configs.

A run config with a ``schedule:`` section (``flows.config.ScheduleSpec``) becomes one deployment
of one of three flows, with the whole config as its parameter (so the Prefect UI shows it and a
run does not depend on the file staying where it was):

- ``scheduled-generate``: a new version of each job's dataset, ``latest`` moved after each;
- ``scheduled-pipeline``: the same, then evaluation, audits and the report;
- ``scheduled-evaluate``: the report on the versions ``latest`` points at, generating nothing.

Schedules need a Prefect server with its scheduler running (``prefect server start``); the
temporary server Prefect starts for one-off commands runs no scheduler, so ``check_server``
refuses to serve without ``PREFECT_API_URL`` pointing at a server that answers.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from prefect import flow

from flows.config import RunConfig
from flows.generate import generate_version_flow
from flows.pipeline import pipeline
from flows.summaries import run_id

SERVER_HINT = ("start one with `prefect server start --host 127.0.0.1` (in another terminal or as "
               "a service) and `export PREFECT_API_URL=http://127.0.0.1:4200/api`; see README, "
               "\"Schedules\"")


@flow(name="scheduled-generate", log_prints=True)
def scheduled_generate(config: dict) -> list[dict]:
    """A new version of each job (of ``schedule.jobs``, or all) of the run ``config``."""
    run = RunConfig.model_validate(config)
    jobs = [run.job(name) for name in run.schedule.jobs] if run.schedule.jobs else run.jobs
    return [generate_version_flow(job, run.out, run.schedule.reseed, run.runner) for job in jobs]


def _report(config: dict, source: str, datasets: str) -> dict:
    run = RunConfig.model_validate(config)
    rid = run_id(f"scheduled-{run.jobs[0].name}")
    report_dir = Path(run.evaluate.reports_dir) / rid
    return pipeline(run, str(report_dir), {"run id": rid, "config": source}, datasets,
                    run.schedule.reseed)


@flow(name="scheduled-pipeline", log_prints=True)
def scheduled_pipeline(config: dict, source: str = "") -> dict:
    """New versions of every job, then evaluation, audits and the report."""
    return _report(config, source, "version")


@flow(name="scheduled-evaluate", log_prints=True)
def scheduled_evaluate(config: dict, source: str = "") -> dict:
    """The report on the versions each job's ``latest`` points at."""
    return _report(config, source, "latest")


FLOWS = {"generate": scheduled_generate, "pipeline": scheduled_pipeline,
         "evaluate": scheduled_evaluate}


def deployment(run: RunConfig, source: Path):
    """The deployment of ``run`` (a config with a schedule) read from the file ``source``."""
    from prefect.schedules import Cron, Interval

    spec = run.schedule
    when = (Cron(spec.cron, timezone=spec.timezone) if spec.cron
            else Interval(timedelta(seconds=spec.interval)))
    parameters = {"config": run.model_dump(mode="json")}
    if spec.flow != "generate":
        parameters["source"] = str(source)
    return FLOWS[spec.flow].to_deployment(
        name=spec.name or source.stem, schedule=when, parameters=parameters,
        concurrency_limit=1,  # runs of one deployment queue up: never two on the same series
        description=f"synthmill {spec.flow} of {source} "
                    f"({'cron ' + spec.cron if spec.cron else f'every {spec.interval:g} s'})")


def check_server() -> str:
    """The URL of the Prefect server schedules will run on, or RuntimeError saying how to get
    one: ``PREFECT_API_URL`` must be set and the server must answer."""
    import httpx
    from prefect.settings import PREFECT_API_URL

    url = PREFECT_API_URL.value()
    if not url:
        raise RuntimeError(f"schedules need a Prefect server (PREFECT_API_URL is not set): "
                           f"{SERVER_HINT}")
    try:
        httpx.get(f"{url.rstrip('/')}/health", timeout=5).raise_for_status()
    except httpx.HTTPError as exc:
        raise RuntimeError(f"no Prefect server answers at PREFECT_API_URL={url} "
                           f"({type(exc).__name__}): {SERVER_HINT}") from None
    return url
