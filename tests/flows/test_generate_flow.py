"""The generation flow end to end under a Prefect test server, on the embedded model."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import yaml
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO

from augment.config.image import ImageJob, ImageSamplerSpec, ShapesLayoutSpec
from flows.config import RunConfig
from augment.image.dataset import SynthDataset
from augment.core.io import FolderLock


@pytest.fixture(scope="module")
def flow_dataset(prefect_harness, tmp_path_factory):
    from flows.generate import run_generate

    out = tmp_path_factory.mktemp("flow")
    config = RunConfig(out=str(out), jobs=[ImageJob(
        name="flowset", num_samples=8, shard_size=3, seed=1,
        sampler=ImageSamplerSpec(steps=2, batch_size=4),
        layout=ShapesLayoutSpec(objects_per_image=(1, 4), colour_unspecified=0.25))])
    (summary,) = run_generate(config)
    return config, summary


def test_flow_writes_a_dataset_that_pycocotools_loads(flow_dataset):
    config, summary = flow_dataset
    root = f"{config.out}/flowset"
    assert summary["path"] == root and summary["counts"]["samples"] == 8
    coco = COCO(f"{root}/annotations/instances.json")
    manifest = pd.read_parquet(f"{root}/manifest.parquet")
    exported = manifest[manifest["kept"] & (manifest["status"] != "failed")]
    assert sorted(coco.getImgIds()) == sorted(exported["id"])
    assert {c["name"] for c in coco.loadCats(coco.getCatIds())} >= {"circle", "square", "triangle"}
    for ann in coco.loadAnns(coco.getAnnIds()):
        m = mask_utils.decode(ann["segmentation"])
        ys, xs = np.nonzero(m)
        assert ann["area"] == m.sum() > 0
        assert ann["bbox"] == [xs.min(), ys.min(), xs.max() - xs.min() + 1, ys.max() - ys.min() + 1]
        assert ann["iscrowd"] == 0 and "colour" in ann["attributes"]


def test_yolo_labels_parse_and_match_coco_boxes(flow_dataset):
    config, _ = flow_dataset
    root = f"{config.out}/flowset"
    coco = json.load(open(f"{root}/annotations/instances.json"))
    data = yaml.safe_load(open(f"{root}/yolo/detect/data.yaml"))
    assert data["nc"] == len(data["names"]) == 5
    by_image = {}
    for ann in coco["annotations"]:
        by_image.setdefault(ann["image_id"], []).append(ann)
    for image in coco["images"]:
        stem = image["file_name"].split("/")[-1].rsplit(".", 1)[0]
        rows = [r.split() for r in open(f"{root}/yolo/detect/labels/{stem}.txt").read().splitlines()]
        assert len(rows) == len(by_image.get(image["id"], []))
        for row, ann in zip(rows, by_image.get(image["id"], [])):
            cls, cx, cy, w, h = int(row[0]), *map(float, row[1:])
            x, y, bw, bh = ann["bbox"]
            assert cls == ann["category_id"] - 1
            np.testing.assert_allclose([cx, cy, w, h], [(x + bw / 2) / 64, (y + bh / 2) / 64,
                                                        bw / 64, bh / 64], atol=1e-6)


def test_dataset_class_returns_consistent_tensors(flow_dataset):
    config, _ = flow_dataset
    ds = SynthDataset(f"{config.out}/flowset")
    coco = COCO(f"{config.out}/flowset/annotations/instances.json")
    assert len(ds) == len(coco.getImgIds())
    for item in ds:
        anns = coco.loadAnns(coco.getAnnIds(imgIds=[item["id"]]))
        assert item["image"].shape == (3, 64, 64)
        assert item["masks"].shape[0] == len(anns) == len(item["labels"]) == len(item["boxes"])
        for k, ann in enumerate(anns):
            assert int(item["masks"][k].sum()) == ann["area"]
            assert int(item["labels"][k]) == ann["category_id"]


def test_the_flow_refuses_a_locked_folder(flow_dataset):
    from flows.generate import run_generate

    config, _ = flow_dataset
    with FolderLock(f"{config.out}/flowset"):
        with pytest.raises(RuntimeError, match="in use by another synthmill run"):
            run_generate(config)


def test_rerunning_a_finished_dataset_regenerates_nothing(flow_dataset):
    from flows.generate import run_generate

    config, _ = flow_dataset
    root = f"{config.out}/flowset"
    before = pd.read_parquet(f"{root}/manifest.parquet")
    (again,) = run_generate(config)
    assert again["counts"] == flow_dataset[1]["counts"]
    pd.testing.assert_frame_equal(before, pd.read_parquet(f"{root}/manifest.parquet"))


def test_the_flow_makes_an_audio_dataset(prefect_harness, tmp_path):
    from augment.audio.dataset import AudioDataset
    from augment.config.audio import AudioJob
    from flows.generate import run_generate

    job = AudioJob.model_validate({"name": "tones", "num_samples": 5, "shard_size": 2,
                                   "model": {"backend": "tones-world"},
                                   "soundscape": {"duration": 2.0}})
    (summary,) = run_generate(RunConfig(out=str(tmp_path), jobs=[job]))
    assert summary["counts"]["samples"] == 5 and summary["counts"]["kept"] >= 4
    events = pd.read_csv(tmp_path / "tones" / "annotations" / "events.tsv", sep="\t")
    assert len(AudioDataset(tmp_path / "tones")) == summary["counts"]["kept"]
    assert len(events) == sum(summary["counts"]["instances_per_class"].values())


def test_the_generation_summary_says_the_share_of_time_outside_model_calls():
    from flows.summaries import generation_markdown

    counts = {"samples": 4, "kept": 3, "dropped": 1, "failed": 0, "instances_per_class": {}}
    text = generation_markdown("d", {"counts": counts, "wall_seconds": 10.0,
                                     "samples_per_second": 0.4, "outside_model_share": 0.025})
    assert "- time: 10.0 s (0.40 samples/s; 2.5% of it outside model calls)" in text
    del_share = generation_markdown("d", {"counts": counts, "wall_seconds": 10.0,
                                          "samples_per_second": 0.4})
    assert "- time: 10.0 s (0.40 samples/s)" in del_share


@pytest.mark.parametrize("workers", [1, 2])
def test_shards_run_in_the_flow_thread_unless_several_run_at_once(prefect_harness, tmp_path,
                                                                  monkeypatch, workers):
    """With one worker, shard tasks are called in the flow's thread: a pool thread would own a
    second OpenMP team beside the caller's, which made sampling 8-12% slower on 2 cores (issue
    14). Two workers need the pool, and get it."""
    import threading

    import flows.generate as generate
    from flows.config import RunnerSpec

    threads, real = [], generate.generate_shard

    def spy(job, root, shard):
        threads.append(threading.current_thread())
        return real(job, root, shard)

    monkeypatch.setattr(generate, "generate_shard", spy)
    job = ImageJob.model_validate({
        "name": "where", "num_samples": 4, "shard_size": 1, "model": {"backend": "shapes-world"},
        "verify": {"enabled": False}})
    config = RunConfig(out=str(tmp_path), jobs=[job], runner=RunnerSpec(max_workers=workers))
    (summary,) = generate.run_generate(config)
    assert summary["counts"]["samples"] == 4 and len(threads) == 4
    in_caller = [t is threading.main_thread() for t in threads]
    assert in_caller == [workers == 1] * 4
