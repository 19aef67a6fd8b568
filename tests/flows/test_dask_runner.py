"""Scale-out on a real Dask cluster: the generation flow with ``runner: {kind: dask}`` on a local
cluster of 2 worker processes (prefect-dask's ``DaskTaskRunner``) makes the same dataset as the
default thread runner, and its workers report to the run's one Prefect server."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from unittest import mock

import pandas as pd
import pytest

from augment.config.image import ImageJob
from flows.config import RunConfig, RunnerSpec

TIMINGS = ["seconds"]


def _files(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*"))
            if p.is_file() and p.suffix != ".parquet" and p.name not in {"dataset.json", ".lock"}}


@pytest.fixture(scope="module")
def two_runs(prefect_harness, tmp_path_factory):
    from flows.generate import run_generate

    # procedural renders, so that pixels can be compared byte for byte: a neural model's floats
    # depend on the torch thread count, and Dask's nanny starts workers with OMP_NUM_THREADS=1
    job = ImageJob.model_validate({
        "name": "scaled", "num_samples": 8, "shard_size": 2, "seed": 3,
        "model": {"backend": "shapes-world"}, "sampler": {"batch_size": 2},
        "layout": {"objects_per_image": [1, 3]}, "verify": {"enabled": False}})
    out = tmp_path_factory.mktemp("dask")
    roots = {}
    for kind in ("threads", "dask"):
        config = RunConfig(out=str(out / kind), jobs=[job],
                           runner=RunnerSpec(kind=kind, max_workers=2))
        before = dict(os.environ)
        (summary,) = run_generate(config)
        roots[kind] = Path(summary["path"])
        roots[f"{kind} environment"] = (before, dict(os.environ))
    return roots


def test_a_local_dask_cluster_leaves_this_process_environment_as_it_was(two_runs):
    """distributed's nanny writes OMP_NUM_THREADS=1 and more into the parent's environment before
    spawning workers: a CLI run started afterwards from this process ran torch on one thread."""
    before, after = two_runs["dask environment"]
    after.pop("__DASK_PARENT_PID", None)  # marks this process as the parent, for process titles
    assert after == before


def test_a_local_dask_cluster_makes_the_same_dataset_as_threads(two_runs):
    threads, dask = _files(two_runs["threads"]), _files(two_runs["dask"])
    assert sum(k.startswith("images/") for k in threads) == 8
    assert threads == dask  # images, masks, COCO, YOLO, captions, byte for byte
    a = pd.read_parquet(two_runs["threads"] / "manifest.parquet").drop(columns=TIMINGS)
    b = pd.read_parquet(two_runs["dask"] / "manifest.parquet").drop(columns=TIMINGS)
    pd.testing.assert_frame_equal(a.sort_values("id").reset_index(drop=True),
                                  b.sort_values("id").reset_index(drop=True))
    assert b["id"].is_unique and sorted(b["id"]) == list(range(8))


def test_a_killed_worker_costs_no_sample_and_duplicates_none(prefect_harness, tmp_path):
    """A worker process killed (SIGKILL, by its PID) while shards are in flight: Dask's nanny
    starts a new one, the lost shard runs again (shards are idempotent), and the dataset has every
    sample once, with no half-written file."""
    import threading

    import psutil
    from PIL import Image

    from flows.generate import run_generate

    job = ImageJob.model_validate({
        "name": "killed", "num_samples": 12, "shard_size": 2, "seed": 5,
        "sampler": {"steps": 6, "batch_size": 2}, "verify": {"enabled": False}})
    config = RunConfig(out=str(tmp_path), jobs=[job], runner=RunnerSpec(kind="dask", max_workers=2))
    parts = tmp_path / "killed" / ".synthmill" / "parts"
    killed: list[int] = []

    def kill_one_worker_after_the_first_shard():
        for _ in range(1200):
            workers = [p for p in psutil.Process().children(recursive=True)
                       if "spawn_main" in " ".join(p.cmdline())]
            if parts.exists() and any(parts.glob("*.parquet")) and workers:
                workers[0].kill()
                killed.append(workers[0].pid)
                return
            threading.Event().wait(0.05)

    killer = threading.Thread(target=kill_one_worker_after_the_first_shard, daemon=True)
    killer.start()
    (summary,) = run_generate(config)
    killer.join(timeout=5)
    assert killed, "no worker was killed mid-run (the run finished first)"
    root = Path(summary["path"])
    manifest = pd.read_parquet(root / "manifest.parquet")
    assert sorted(manifest["id"]) == list(range(12))  # each sample once
    images = sorted((root / "images").iterdir())
    assert [p.name for p in images] == [f"{i:06d}.png" for i in range(12)]
    for path in images:
        Image.open(path).verify()
    assert not [p for p in root.rglob("*") if ".tmp" in p.name]



def test_gpu_shards_reserve_a_worker_gpu_and_each_worker_sees_its_own(prefect_harness):
    """``gpus_per_shard: 1`` on a local cluster: each worker offers one GPU resource and sees only
    its own device (``gpu_ids`` here, so that the test runs without GPUs), and every shard task
    is submitted with a GPU reservation the scheduler honours."""
    from prefect import flow, task

    from flows.runners import make_task_runner, shard_resources

    def shard_probe() -> dict:  # defined here, so that it travels to the workers by value
        """What a shard task sees on its Dask worker: the worker, its visible GPU and the
        resources the scheduler reserved for the task."""
        import os

        from distributed import get_worker
        from distributed.worker import thread_state

        worker = get_worker()
        return {"worker": worker.name, "gpu": os.environ.get("CUDA_VISIBLE_DEVICES"),
                "reserved": worker.state.tasks[thread_state.key].resource_restrictions}

    spec = RunnerSpec(kind="dask", max_workers=2, gpus_per_shard=1, gpu_ids=[3, 5])
    probe = task(shard_probe, name="probe")

    @flow(task_runner=make_task_runner(spec))
    def probes() -> list[dict]:
        with shard_resources(spec):
            futures = [probe.submit() for _ in range(6)]
        return [f.result() for f in futures]

    seen = probes()
    assert all(s["reserved"] == {"GPU": 1} for s in seen)
    assert {s["worker"]: s["gpu"] for s in seen}.items() <= {0: "3", 1: "5"}.items()
    assert {s["gpu"] for s in seen} <= {"3", "5"}


def test_gpu_settings_are_checked_where_they_cannot_work():
    with pytest.raises(ValueError, match="gpus_per_shard: needs kind dask or ray"):
        RunnerSpec(kind="threads", gpus_per_shard=1)
    with pytest.raises(ValueError, match="at most 1"):
        RunnerSpec(kind="dask", gpus_per_shard=2)
    with pytest.raises(ValueError, match="gpu_ids: only for a local Dask cluster"):
        RunnerSpec(kind="dask", address="tcp://host:8786", gpus_per_shard=1, gpu_ids=[0])


def test_worker_progress_bars_hold_no_process_lock():
    """tqdm's default lock includes a multiprocessing lock, a named semaphore recorded by the
    parent's resource tracker. A local worker killed mid-shard (a Ctrl-C during an unstoppable
    weights load, a lost worker) never releases it, and the tracker warned of leaked semaphores
    after the command's last line. The local cluster's workers draw bars under a thread lock."""
    from distributed import Client, LocalCluster

    from flows.dask_workers import StopOnCtrlC

    def bar_locks() -> list[str]:  # defined here so that Dask ships it by value
        from tqdm import tqdm

        for _ in tqdm(range(2), disable=True):
            pass
        lock = tqdm.get_lock()
        return [type(held).__module__ for held in getattr(lock, "locks", [lock])]

    # the nanny writes OMP_NUM_THREADS=1 and more into os.environ: patch.dict puts it back
    with mock.patch.dict(os.environ), \
            LocalCluster(n_workers=1, threads_per_worker=1, processes=True,
                         plugins={StopOnCtrlC()}, dashboard_address=None) as cluster, \
            Client(cluster) as client:
        (locks,) = client.run(bar_locks).values()
    assert locks and not [module for module in locks if module.startswith("multiprocessing")]
