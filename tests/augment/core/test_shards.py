"""Generation library: exact labels, resumable shards, a lock, the NaN guard, honest refusals."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

import augment.core.shards as gen
from augment.config.image import ImageJob, ImageSamplerSpec, ShapesLayoutSpec
from augment.core.backends import render_guarded
from augment.core.io import FolderLock, FolderLockedError
from augment.core.seeds import sample_seeds, split_of
from augment.image.layout_types import Layout
from augment.image.layouts import sample_layout

TIMING = ["seconds"]


def small_job(**kw) -> ImageJob:
    base = dict(name="tiny", num_samples=6, shard_size=2, seed=3,
                sampler=ImageSamplerSpec(steps=2, batch_size=2, scheduler="ddim"),
                layout=ShapesLayoutSpec(objects_per_image=(1, 3), colour_unspecified=0.3))
    base.update(kw)
    return ImageJob(**base)


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    out = tmp_path_factory.mktemp("out")
    job = small_job()
    root, summary = gen.generate_dataset(job, out)
    return job, root, summary


def test_folder_has_the_contract_files(made):
    job, root, summary = made
    for rel in ["dataset.json", "manifest.parquet", "annotations/instances.json",
                "yolo/detect/data.yaml", "yolo/segment/data.yaml"]:
        assert (root / rel).is_file(), rel
    manifest = pd.read_parquet(root / "manifest.parquet")
    assert list(manifest["id"]) == list(range(job.num_samples))
    assert summary["counts"]["samples"] == job.num_samples
    info = json.loads((root / "dataset.json").read_text())
    assert info["config"]["seed"] == 3 and len(info["model"]["weights_sha256"]) == 16
    assert not list(root.rglob("*.tmp"))


def test_masks_on_disk_are_the_layout_labels(made):
    job, root, _ = made
    manifest = pd.read_parquet(root / "manifest.parquet")
    for row in manifest.itertuples():
        layout = Layout.from_json(row.layout)
        assert np.array_equal(np.array(Image.open(root / row.instance_mask)), layout.instance_map)
        assert np.array_equal(np.array(Image.open(root / row.semantic_mask)), layout.semantic_map)
        image = np.array(Image.open(root / row.image))
        assert image.shape == (64, 64, 3) and image.dtype == np.uint8


def test_manifest_records_how_each_sample_was_made(made):
    job, root, _ = made
    row = pd.read_parquet(root / "manifest.parquet").iloc[0]
    assert row["scheduler"] == "ddim" and row["steps"] == 2 and row["guidance"] == job.sampler.guidance
    assert row["config_hash"] == gen.job_fingerprint(job)
    instances = json.loads(row["instances"])
    assert len(instances) == row["num_instances"] >= 1
    for inst in instances:
        assert 0.0 <= inst["verify_iou"] <= 1.0
        assert inst["colour_source"] in ("condition", "checker")


def test_interrupted_run_resumes_to_the_same_manifest(made, tmp_path, monkeypatch):
    job, root, _ = made
    real = gen.generate_shard
    calls = []

    def dies_after_one_shard(*args, **kw):
        if len(calls) == 1:
            raise KeyboardInterrupt("killed")
        calls.append(1)
        return real(*args, **kw)

    monkeypatch.setattr(gen, "generate_shard", dies_after_one_shard)
    with pytest.raises(KeyboardInterrupt):
        gen.generate_dataset(job, tmp_path)
    assert gen.pending_shards(job, tmp_path / job.name) == [1, 2]
    # a half-written file of the killed shard must not survive the resume
    (tmp_path / job.name / "images" / ".000002.png.abc.tmp").write_bytes(b"partial")
    monkeypatch.setattr(gen, "generate_shard", real)
    resumed, _ = gen.generate_dataset(job, tmp_path)
    a = pd.read_parquet(root / "manifest.parquet").drop(columns=TIMING)
    b = pd.read_parquet(resumed / "manifest.parquet").drop(columns=TIMING)
    pd.testing.assert_frame_equal(a.drop(columns=["model"]), b.drop(columns=["model"]))
    assert not list(resumed.rglob("*.tmp"))


def test_a_writer_killed_mid_run_leaves_no_partial_file(tmp_path, monkeypatch):
    """A Dask worker killed mid-file (SIGKILL) leaves its temporary file, and its shard runs again
    on another worker within the same run, after the folder was prepared: the finished dataset
    holds no temporary file."""
    job = small_job(num_samples=4, shard_size=2)
    real = gen.generate_shard

    def shard_after_a_killed_attempt(job, root, shard, *args, **kw):
        if shard == 1:
            (Path(root) / "masks" / "instance").mkdir(parents=True, exist_ok=True)
            (Path(root) / "masks" / "instance" / ".000002.png.k1ll3d.tmp").write_bytes(b"partial")
        return real(job, root, shard, *args, **kw)

    monkeypatch.setattr(gen, "generate_shard", shard_after_a_killed_attempt)
    root, _ = gen.generate_dataset(job, tmp_path)
    assert len(pd.read_parquet(root / "manifest.parquet")) == 4
    assert not [p for p in root.rglob("*") if p.name.endswith(".tmp")]


def test_a_second_concurrent_run_is_refused(tmp_path):
    job = small_job(num_samples=2)
    with FolderLock(tmp_path / job.name):
        with pytest.raises(FolderLockedError, match="in use by another synthmill run"):
            gen.generate_dataset(job, tmp_path)


def test_lock_is_released_and_reacquired_across_threads(tmp_path):
    errors = []

    def hold():
        try:
            with FolderLock(tmp_path / "x"):
                pass
        except FolderLockedError as exc:
            errors.append(exc)

    threads = [threading.Thread(target=hold) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    with FolderLock(tmp_path / "x"):
        pass


def test_a_different_config_on_the_same_folder_is_refused(made):
    job, root, _ = made
    other = small_job(seed=4)
    with pytest.raises(FileExistsError, match="different config"):
        gen.generate_dataset(other, root.parent)


def test_a_foreign_folder_is_not_overwritten(tmp_path):
    (tmp_path / "tiny").mkdir()
    (tmp_path / "tiny" / "precious.txt").write_text("keep me")
    with pytest.raises(FileExistsError, match="not a synthmill dataset"):
        gen.generate_dataset(small_job(), tmp_path)
    assert (tmp_path / "tiny" / "precious.txt").read_text() == "keep me"


class NaNOnce:
    """A backend whose sample 1 overflows to NaN in half precision but is fine in fp32."""

    model_id, weights = "fake", "0" * 16

    def __init__(self, fail_fp32=False):
        self.calls, self.fail_fp32 = [], fail_fp32

    def render(self, layouts, sampler, seeds, force_fp32=False):
        self.calls.append((len(layouts), force_fp32))
        out = np.full((len(layouts), 64, 64, 3), 0.5, np.float32)
        if not force_fp32 or self.fail_fp32:
            out[min(1, len(layouts) - 1)] = np.nan
        return out

    def prompt(self, layout, sampler):
        return None


def test_nan_guard_retries_in_fp32_then_marks_failed():
    layouts = [sample_layout(ShapesLayoutSpec(), 0, i) for i in range(3)]
    backend = NaNOnce()
    images, status = render_guarded(backend, layouts, ImageSamplerSpec(), [1, 2, 3])
    assert status == ["ok", "retried_fp32", "ok"] and np.isfinite(images).all()
    assert backend.calls == [(3, False), (1, True)]
    images, status = render_guarded(NaNOnce(fail_fp32=True), layouts, ImageSamplerSpec(), [1, 2, 3])
    assert status == ["ok", "failed", "ok"] and np.isfinite(images).all()


def test_failed_samples_are_kept_out_of_the_exports(tmp_path, monkeypatch):
    monkeypatch.setattr(gen, "load_backend", lambda spec: NaNOnce(fail_fp32=True))
    job = small_job(num_samples=2, shard_size=2)
    root, summary = gen.generate_dataset(job, tmp_path)
    manifest = pd.read_parquet(root / "manifest.parquet")
    assert list(manifest["status"]) == ["ok", "failed"] and not manifest["kept"].iloc[1]
    assert summary["counts"]["failed"] == 1
    coco = json.loads((root / "annotations" / "instances.json").read_text())
    assert 1 not in {im["id"] for im in coco["images"]}


def test_split_is_deterministic_and_near_the_requested_fraction():
    splits = [split_of(0, i, 0.2) for i in range(2000)]
    assert splits == [split_of(0, i, 0.2) for i in range(2000)]
    assert abs(splits.count("val") / 2000 - 0.2) < 0.04


def test_a_sample_rescued_in_fp32_is_exported(tmp_path, monkeypatch):
    monkeypatch.setattr(gen, "load_backend", lambda spec: NaNOnce())
    job = small_job(num_samples=2, shard_size=2, verify={"enabled": False})
    root, _ = gen.generate_dataset(job, tmp_path)
    manifest = pd.read_parquet(root / "manifest.parquet")
    assert list(manifest["status"]) == ["ok", "retried_fp32"] and manifest["kept"].all()
    coco = json.loads((root / "annotations" / "instances.json").read_text())
    assert {im["id"] for im in coco["images"]} == {0, 1}


class Counting:
    """A backend that records the noise seed of every sample it renders."""

    model_id, weights = "fake", "0" * 16

    def __init__(self):
        self.seeds = []

    def render(self, layouts, sampler, seeds, force_fp32=False):
        self.seeds += list(seeds)
        return np.full((len(seeds), 64, 64, 3), 0.5, np.float32)

    def prompt(self, layout, sampler):
        return None


def test_resume_renders_only_the_unfinished_shards(tmp_path, monkeypatch):
    job = small_job(verify={"enabled": False})
    backend = Counting()
    monkeypatch.setattr(gen, "load_backend", lambda spec: backend)
    root = gen.prepare_dataset(job, tmp_path)
    gen.generate_shard(job, root, 0)
    # files are written atomically (a new inode each time): a rewrite shows even within one tick
    first = {p: (p.stat().st_ino, p.stat().st_mtime_ns) for p in root.rglob("*")
             if p.is_file() and p.name not in ("job.json", ".lock")}  # job.json: rewritten on resume
    assert len(first) == 2 * 3 + 1  # two samples' image and masks, and the shard's manifest part
    noise_seed = {sample_seeds(job.seed, i)[1]: i for i in range(job.num_samples)}
    assert sorted(noise_seed[s] for s in backend.seeds) == list(gen.shard_ids(job, 0))
    assert gen.pending_shards(job, root) == [1, 2]

    backend.seeds.clear()
    gen.generate_dataset(job, tmp_path)
    assert sorted(noise_seed[s] for s in backend.seeds) == [2, 3, 4, 5]  # shards 1 and 2 only
    assert {p: (p.stat().st_ino, p.stat().st_mtime_ns) for p in first} == first
    assert gen.pending_shards(job, root) == []
