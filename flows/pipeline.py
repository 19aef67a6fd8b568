"""The main job: generate a labeled dataset with the configured backend and say where it is."""

from __future__ import annotations

from prefect import flow

from augment.config import RunConfig
from flows.generate import generate_image_dataset
from flows.runners import make_task_runner


@flow(name="synthmill-pipeline", log_prints=True)
def pipeline(config: RunConfig) -> dict:
    """generate -> (evaluate -> report, as those stages land). Returns a summary per stage."""
    runner = make_task_runner(config.runner)
    return {"generate": generate_image_dataset.with_options(task_runner=runner)(config)}
