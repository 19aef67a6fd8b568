"""Scale-out on a real Dask cluster: the generation flow with ``runner: {kind: dask}`` on a local
cluster of 2 worker processes (prefect-dask's ``DaskTaskRunner``) makes the same dataset as the
default thread runner, and its workers report to the run's one Prefect server."""

from __future__ import annotations

import hashlib
from pathlib import Path

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
        (summary,) = run_generate(config)
        roots[kind] = Path(summary["path"])
    return roots


def test_a_local_dask_cluster_makes_the_same_dataset_as_threads(two_runs):
    threads, dask = _files(two_runs["threads"]), _files(two_runs["dask"])
    assert sum(k.startswith("images/") for k in threads) == 8
    assert threads == dask  # images, masks, COCO, YOLO, captions, byte for byte
    a = pd.read_parquet(two_runs["threads"] / "manifest.parquet").drop(columns=TIMINGS)
    b = pd.read_parquet(two_runs["dask"] / "manifest.parquet").drop(columns=TIMINGS)
    pd.testing.assert_frame_equal(a.sort_values("id").reset_index(drop=True),
                                  b.sort_values("id").reset_index(drop=True))
    assert b["id"].is_unique and sorted(b["id"]) == list(range(8))
