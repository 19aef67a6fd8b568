"""Dataset-generation flow: one task per shard of sample ids, then one task that finalizes.

Tasks take the job config and paths, never tensors; the folder lock is held by the flow for the
whole run, so a second run on the same folder fails at once. Any modality's job runs here: the
shard functions ask the job's modality for what a sample is.
"""

from __future__ import annotations

import time
from contextlib import contextmanager, nullcontext

from prefect import flow, task
from prefect.artifacts import create_markdown_artifact
from prefect.futures import as_completed
from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings
from tqdm.auto import tqdm

from augment.config.base import JobBase
from augment.core.io import FolderLock
from augment.core.shards import (dataset_dir, finalize_dataset, generate_shard, pending_shards,
                                 prepare_dataset, samples_done)
from augment.core.versions import open_version, promote
from flows.config import RunConfig, RunnerSpec
from flows.runners import configured_server, make_task_runner, shard_resources
from flows.summaries import generation_markdown


@task(name="generate-shard")
def generate_shard_task(job: JobBase, root: str, shard: int) -> dict:
    return generate_shard(job, root, shard)


@task(name="finalize-dataset")
def finalize_task(job: JobBase, root: str, seconds: float, model_seconds: float) -> dict:
    return finalize_dataset(job, root, seconds, model_seconds)


def shard_results(job: JobBase, root: str, shards: list[int], runner: RunnerSpec | None):
    """The shard tasks' results as they finish. With one thread (``RunnerSpec()``, the default)
    each shard task is called in the flow's own thread, one after the other; otherwise they are
    submitted to the flow's task runner.

    Why not a pool of one thread: torch's CPU kernels run on OpenMP, and every OS thread that runs
    one gets a team of OpenMP threads of its own. Once two threads of a process own teams (the
    caller's, from any torch work it did, and the pool's), libgomp sees more of its threads than
    cores and its threads stop spinning between parallel regions: sampling on 2 cores then ran at
    86% CPU use instead of 99%, and the flow made images 8-12% slower than the same loop outside
    it (issue 14). In the flow's thread there is one team, whatever the caller did before."""
    if runner is None or (runner.kind == "threads" and runner.max_workers == 1):
        for shard in shards:
            yield generate_shard_task(job, root, shard)
        return
    with shard_resources(runner):
        futures = [generate_shard_task.submit(job, root, s) for s in shards]
    for future in as_completed(futures):
        yield future.result()


@flow(name="generate-dataset", log_prints=True)
def generate_dataset_flow(job: JobBase, out: str, version: str | None = None,
                          runner: RunnerSpec | None = None) -> dict:
    """Generate ``job`` into ``out``/<job name> (``/<version>`` for a version of a series);
    resumes an interrupted run of the same job. ``runner``: what each shard reserves (GPUs)."""
    root = dataset_dir(job, out, version)
    start = time.perf_counter()
    with FolderLock(root):
        prepare_dataset(job, out, version)
        shards = pending_shards(job, root)
        done_before = samples_done(job, root)
        model_seconds = 0.0
        with tqdm(total=job.num_samples, initial=done_before, desc=f"generate {job.name}",
                  unit="sample") as bar:
            for result in shard_results(job, str(root), shards, runner):
                bar.update(result["samples"])
                model_seconds += result["model_seconds"]
        summary = finalize_task(job, str(root), time.perf_counter() - start, model_seconds)
    summary["path"] = str(root)
    create_markdown_artifact(generation_markdown(job.name, summary), key="generation-summary")
    return summary


@flow(name="generate-dataset-version", log_prints=True)
def generate_version_flow(job: JobBase, out: str, reseed: bool = True,
                          runner: RunnerSpec | None = None) -> dict:
    """Generate the next version of ``job`` under ``out``/<job name>/ and point ``latest`` at it
    once it is finished (a failed run leaves ``latest`` where it was); shards run on ``runner``."""
    version, versioned = open_version(job, out, reseed)
    generate = generate_dataset_flow.with_options(
        task_runner=make_task_runner(runner or RunnerSpec()))
    summary = generate(versioned, out, version, runner)
    summary["latest"] = str(promote(dataset_dir(job, out), version))
    return summary


@contextmanager
def heartbeats_only_for_a_lasting_server():
    """No flow-run heartbeats while this process uses Prefect's temporary server (no
    ``PREFECT_API_URL``). Heartbeats tell a lasting server that a run is alive; the temporary one
    ends with this process, so they tell it nothing, and their thread, which sleeps in 1 s steps
    and is joined when a flow run ends, made every flow run 0-1 s longer (issue 14: 96 images in
    ~18 s, so up to 5% of the flow's time)."""
    with (nullcontext() if configured_server()
          else temporary_settings(updates={PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None})):
        yield


def run_generate(config: RunConfig, names: list[str] | None = None) -> list[dict]:
    """Generate the config's jobs (those in ``names``, or all), in order, with the task runner
    the config asks for; returns their summaries."""
    jobs = config.selected_jobs(names)
    flow_ = generate_dataset_flow.with_options(task_runner=make_task_runner(config.runner))
    with heartbeats_only_for_a_lasting_server():
        return [flow_(job, config.out, runner=config.runner) for job in jobs]
