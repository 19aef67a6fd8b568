"""Versioned datasets (``augment.core.versions`` and ``generate_version_flow``): every run a new
version, ``latest`` moved only after success, a failed run resumed into the same version, and
readers that take the series folder or its bare name."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from augment.config.image import ImageJob
from augment.core.shards import generate_dataset
from augment.core.versions import (LATEST, dataset_label, latest, open_version, promote,
                                   resolve_dataset, versions)
from augment.image.dataset import SynthDataset


def _job(**kw) -> ImageJob:
    return ImageJob.model_validate({
        "name": "series", "num_samples": 4, "shard_size": 2, "seed": 11,
        "model": {"backend": "shapes-world"}, "verify": {"enabled": False}, **kw})


def _files(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file() and p.suffix in (".png", ".txt")}


def test_versions_are_numbered_reseeded_and_latest_follows_success(tmp_path):
    job = _job()
    assert open_version(job, tmp_path) == ("v0001", job)
    generate_dataset(job, tmp_path, version="v0001")
    with pytest.raises(FileNotFoundError, match="no finished one"):
        resolve_dataset(tmp_path / "series")  # a version, but latest never moved
    promote(tmp_path / "series", "v0001")
    version, second = open_version(job, tmp_path)
    assert version == "v0002" and second.seed == 12  # new data: seed + version - 1
    assert open_version(job, tmp_path, reseed=False)[1].seed == 11
    with pytest.raises(RuntimeError, match="not a finished dataset"):
        promote(tmp_path / "series", "v0002")
    assert latest(tmp_path / "series") == "v0001"
    # version 1 is the unversioned dataset, file for file
    generate_dataset(job, tmp_path / "plain")
    assert _files(tmp_path / "series" / "v0001") == _files(tmp_path / "plain" / "series")


def test_an_unfinished_version_is_resumed_only_by_the_same_config(tmp_path):
    job = _job()
    generate_dataset(job, tmp_path, version="v0001")
    promote(tmp_path / "series", "v0001")
    version, second = open_version(job, tmp_path)
    from augment.core.shards import prepare_dataset

    prepare_dataset(second, tmp_path, version)  # begun, never finished (a killed run)
    assert open_version(job, tmp_path) == ("v0002", second)
    changed = _job(num_samples=6)
    assert open_version(changed, tmp_path)[0] == "v0003"  # another config never reuses it


def test_readers_take_the_series_or_its_name_and_resolve_latest(tmp_path, monkeypatch):
    job = _job()
    for version in ("v0001", "v0002"):
        generate_dataset(job.model_copy(update={"seed": 20 + int(version[1:])}), tmp_path,
                         version=version)
    promote(tmp_path / "series", "v0001")
    promote(tmp_path / "series", "v0002")
    series = tmp_path / "series"
    assert resolve_dataset(series) == series / "v0002"
    assert resolve_dataset(series / "v0001") == series / "v0001"
    monkeypatch.chdir(tmp_path.parent)
    assert resolve_dataset("series", datasets_dir=tmp_path) == series / "v0002"
    ds = SynthDataset(series)
    assert ds.root == series / "v0002" and len(ds) == 4
    assert dataset_label(series / "v0002") == "series@v0002"
    assert dataset_label(series / LATEST) == "series@v0002"
    assert dataset_label(tmp_path / "plain") == "plain"
    (series / "v0002" / "dataset.json").unlink()  # latest pointing at a broken version
    with pytest.raises(FileNotFoundError, match="not a finished dataset"):
        resolve_dataset(series)


def test_a_failed_run_leaves_latest_and_the_next_run_resumes_its_version(
        prefect_harness, tmp_path, monkeypatch):
    import flows.generate as generate_module

    job = _job()
    first = generate_module.generate_version_flow(job, str(tmp_path))
    assert Path(first["path"]).name == "v0001"
    real = generate_module.generate_shard

    def dies_on_shard_1(job_, root, shard, *args):
        if shard == 1:
            raise RuntimeError("worker lost")
        return real(job_, root, shard, *args)

    monkeypatch.setattr(generate_module, "generate_shard", dies_on_shard_1)
    with pytest.raises(RuntimeError, match="worker lost"):
        generate_module.generate_version_flow(job, str(tmp_path))
    series = tmp_path / "series"
    assert latest(series) == "v0001" and versions(series) == ["v0001", "v0002"]
    assert not (series / "v0002" / "dataset.json").exists()

    monkeypatch.setattr(generate_module, "generate_shard", real)
    second = generate_module.generate_version_flow(job, str(tmp_path))
    assert Path(second["path"]).name == "v0002" and latest(series) == "v0002"
    resumed = pd.read_parquet(series / "v0002" / "manifest.parquet")
    assert sorted(resumed["id"]) == [0, 1, 2, 3]
    # the same files as an uninterrupted run of version 2
    generate_dataset(job.model_copy(update={"seed": 12}), tmp_path / "direct")
    assert _files(series / "v0002") == _files(tmp_path / "direct" / "series")


def test_evaluate_takes_a_series_name(tmp_path, monkeypatch, prefect_harness):
    from flows.cli import app

    job = _job(num_samples=6)
    generate_dataset(job, tmp_path / "datasets", version="v0001")
    promote(tmp_path / "datasets" / "series", "v0001")
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(app, ["evaluate", "series", "--out", "report",
                                      "--set", "metrics=[diversity]"])
    assert result.exit_code == 0, result.output
    metrics = pd.read_csv(tmp_path / "report" / "metrics.csv")
    assert set(metrics["dataset"]) == {"series@v0001"}


def test_the_pipeline_evaluates_the_latest_versions_without_generating(prefect_harness, tmp_path):
    """What ``scheduled-evaluate`` runs: the report on the version ``latest`` points at."""
    from flows.config import RunConfig
    from flows.pipeline import pipeline

    job = _job(num_samples=6)
    for version in ("v0001", "v0002"):
        generate_dataset(job, tmp_path / "datasets", version=version)
    promote(tmp_path / "datasets" / "series", "v0001")  # v0002 exists but never succeeded
    config = RunConfig.model_validate({"out": str(tmp_path / "datasets"), "jobs": [job.model_dump()],
                                       "evaluate": {"metrics": ["diversity"]}})
    result = pipeline(config, str(tmp_path / "report"), {}, datasets="latest")
    assert result["generate"] == []
    metrics = pd.read_csv(tmp_path / "report" / "metrics.csv")
    assert set(metrics["dataset"]) == {"series@v0001"}
    assert versions(tmp_path / "datasets" / "series") == ["v0001", "v0002"]  # nothing new
