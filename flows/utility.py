"""Utility flow: does the synthetic set help? One task per (arm, real budget, seed), then one that
summarises them into metrics.csv, utility.json, the learning curve and the report."""

from __future__ import annotations

from pathlib import Path

from prefect import flow, task
from prefect.cache_policies import NO_CACHE

from evaluation.config import ReportSpec, UtilitySpec
from evaluation.image.utility import Sets, check_leakage, load_sets, protocol, run_one, runs
from evaluation.suite import report
from evaluation.utility import summarize, write_results
from flows.evaluate import publish


@task(name="utility-run", cache_policy=NO_CACHE)  # its inputs hold the image arrays
def utility_run_task(arm: str, budget: int, seed: int, spec: UtilitySpec, sets: Sets) -> dict:
    return run_one(arm, budget, seed, spec, sets)


@flow(name="utility", log_prints=False)  # COCOeval prints its table
def utility_flow(dataset: str, real: str | None, test: str | None, spec: UtilitySpec,
                 out_dir: str, run_info: dict) -> dict:
    """Train every arm on every budget and seed, score them on the test set, write the results
    and the report into ``out_dir``; returns their paths."""
    sets = load_sets(dataset, real, test, spec)
    leakage = check_leakage(sets.test, [sets.real, sets.synthetic], spec)
    # one run at a time (torch's global seed), each in the flow's thread (flows.generate's
    # shard_results says why not in a pool thread)
    results = [utility_run_task(arm, budget, seed, spec, sets)
               for arm, budget, seed in runs(spec, sets)]
    table = summarize(results, spec, sets.synthetic.name, sets.test.name)
    part = Path(out_dir) / sets.synthetic.name
    metrics = write_results(part, table, results, protocol(spec, sets, leakage))
    paths = report([metrics], [dataset], out_dir, ReportSpec(title="synthmill utility"), run_info)
    publish(out_dir, "utility")
    return {"metrics": str(Path(out_dir) / "metrics.csv"), "part": str(part),
            **{k: str(v) for k, v in paths.items()}}
