"""Boxes-only datasets (the gligen backend): detection labels without pretending to have masks."""

from __future__ import annotations

import json

from pycocotools.coco import COCO

from augment.image.dataset import SynthDataset
from augment.image.world import CLASSES
from augment.image.writers import write_coco, write_yolo


def test_coco_boxes_only_has_the_same_boxes_and_no_segmentation(dataset):
    root, manifest = dataset.root, dataset.manifest
    with_masks = COCO(str(write_coco(root, manifest, list(CLASSES))))
    boxes_only = COCO(str(write_coco(root, manifest, list(CLASSES), labels="boxes")))
    assert boxes_only.getImgIds() == with_masks.getImgIds()
    for a, b in zip(with_masks.dataset["annotations"], boxes_only.dataset["annotations"]):
        assert "segmentation" not in b and b["bbox"] == a["bbox"]
        assert b["area"] == a["bbox"][2] * a["bbox"][3] >= a["area"]
        assert {k: v for k, v in a.items() if k not in ("segmentation", "area")} == \
            {k: v for k, v in b.items() if k != "area"}


def test_yolo_boxes_only_writes_the_detect_task_alone(dataset):
    yolo = write_yolo(dataset.root, dataset.manifest, list(CLASSES), labels="boxes")
    assert sorted(p.name for p in yolo.iterdir()) == ["detect"]
    assert (yolo / "detect" / "labels" / "000000.txt").read_text().count("\n") >= 1


def test_reader_of_a_boxes_only_dataset_returns_boxes_without_masks(dataset):
    info_path = dataset.root / "dataset.json"
    info = json.loads(info_path.read_text())
    with_masks = SynthDataset(dataset.root)[0]
    info_path.write_text(json.dumps({**info, "labels": "boxes"}))
    ds = SynthDataset(dataset.root)
    item = ds[0]
    assert "masks" not in item and "semantic" not in item
    assert item["boxes"].tolist() == with_masks["boxes"].tolist()
    batch = SynthDataset.collate_fn([ds[0], ds[1]])
    assert batch["image"].shape[0] == 2 and "semantic" not in batch
