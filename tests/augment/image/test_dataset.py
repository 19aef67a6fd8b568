"""SynthDataset: tensors that agree with the files and with the COCO export."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from pycocotools.coco import COCO
from torch.utils.data import DataLoader

from augment.image.dataset import SampleReadError, SynthDataset
from augment.image.world import CLASSES
from augment.image.writers import write_coco


def test_items_agree_with_the_coco_export(dataset):
    root, manifest = dataset.root, dataset.manifest
    coco = COCO(str(write_coco(root, manifest, list(CLASSES))))
    ds = SynthDataset(root)
    assert ds.classes == list(CLASSES)
    assert [ds[i]["id"] for i in range(len(ds))] == dataset.exported_ids
    for item in ds:
        anns = coco.loadAnns(coco.getAnnIds(imgIds=item["id"]))
        n, (_, height, width) = len(anns), item["image"].shape
        assert item["image"].dtype == torch.float32
        assert 0 <= item["image"].min() <= item["image"].max() <= 1
        assert item["boxes"].shape == (n, 4) and item["boxes"].dtype == torch.float32
        assert item["labels"].dtype == torch.int64
        assert item["labels"].tolist() == [a["category_id"] for a in anns]
        assert item["masks"].shape == (n, height, width) and item["masks"].dtype == torch.bool
        assert item["semantic"].shape == (height, width) and item["semantic"].dtype == torch.int64
        assert item["attributes"] == [a["attributes"] for a in anns]
        for box, mask, ann in zip(item["boxes"].tolist(), item["masks"], anns):
            x, y, w, h = ann["bbox"]
            assert box == [x, y, x + w, y + h]
            assert mask.sum().item() == ann["area"]
            assert np.array_equal(mask.numpy(), coco.annToMask(ann).astype(bool))
        png = np.array(Image.open(root / "images" / f"{item['id']:06d}.png"))  # (H, W, 3)
        pixels = (item["image"] * 255).round().to(torch.uint8).permute(1, 2, 0)
        assert np.array_equal(pixels.numpy(), png)
        semantic = np.array(Image.open(root / "masks" / "semantic" / f"{item['id']:06d}.png"))
        assert np.array_equal(item["semantic"].numpy(), semantic)
        assert item["caption"] == manifest.loc[item["id"], "caption"]


def test_hidden_instances_and_empty_scenes(dataset):
    root = dataset.root
    ds = SynthDataset(root)
    by_id = {item["id"]: item for item in ds}
    assert by_id[dataset.special["covered"]]["labels"].tolist() == [2]  # not the hidden circle
    empty = by_id[dataset.special["empty"]]
    assert empty["boxes"].shape == (0, 4) and empty["masks"].shape == (0, 48, 64)
    assert not empty["semantic"].any()


def test_split_and_kept_only_filter(dataset):
    root, manifest = dataset.root, dataset.manifest
    val = SynthDataset(root, split="val")
    assert [item["id"] for item in val] == [
        i for i in dataset.exported_ids if manifest.loc[i, "split"] == "val"]
    assert len(SynthDataset(root, split="train")) + len(val) == len(dataset.exported_ids)
    everything = SynthDataset(root, kept_only=False)
    # sample 2 was rejected by verification; sample 3 failed and never appears
    assert [item["id"] for item in everything] == sorted([*dataset.exported_ids, 2])
    with pytest.raises(ValueError, match="split must be one of"):
        SynthDataset(root, split="test")


def test_dataloader_batches(dataset):
    root = dataset.root
    ds = SynthDataset(root, transform=lambda s: {**s, "caption": s["caption"].upper()})
    batch = next(iter(DataLoader(ds, batch_size=4, collate_fn=SynthDataset.collate_fn)))
    assert batch["image"].shape == (4, 3, 48, 64) and batch["semantic"].shape == (4, 48, 64)
    assert batch["id"].tolist() == dataset.exported_ids[:4]
    counts = [len(labels) for labels in batch["labels"]]
    assert [len(b) for b in batch["boxes"]] == [len(m) for m in batch["masks"]] == counts
    assert all(c.isupper() for c in batch["caption"])


@pytest.mark.parametrize("name", ["images/000005.png", "masks/instance/000005.png"])
def test_a_corrupt_or_missing_file_is_named(dataset, name):
    root = dataset.root
    ds = SynthDataset(root)
    index = dataset.exported_ids.index(5)
    path = root / name
    path.write_bytes(path.read_bytes()[:60])  # truncated mid-stream
    with pytest.raises(SampleReadError, match=f"sample 5: .*{path}"):
        ds[index]
    path.unlink()
    with pytest.raises(SampleReadError, match=f"sample 5: .*{path}"):
        ds[index]


def test_a_missing_dataset_json_is_named(dataset):
    root = dataset.root
    (root / "dataset.json").unlink()
    with pytest.raises(ValueError, match="dataset.json"):
        SynthDataset(root)
