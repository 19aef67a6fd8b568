"""COCO and YOLO writers: checked against the masks they were written from."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import yaml
from PIL import Image, ImageDraw
from pycocotools.coco import COCO

from augment.image.dataset import SampleReadError
from augment.core.io import atomic_save_png
from augment.image.world import CLASSES
from augment.image.writers import write_coco, write_yolo
from augment.image.writers.coco import coco_annotations_for_sample
from augment.image.writers.yolo import mask_polygon


def _png(path) -> np.ndarray:
    return np.asarray(Image.open(path))


def _extent_xywh(mask: np.ndarray) -> list[float]:
    rows, cols = np.nonzero(mask)
    return [cols.min(), rows.min(), cols.max() - cols.min() + 1, rows.max() - rows.min() + 1]


def _yolo_rows(path) -> list[list[float]]:
    return [[float(v) for v in line.split()] for line in path.read_text().splitlines()]


def _rasterise(flat: list[float], height: int, width: int) -> np.ndarray:
    """Fill a normalised YOLO polygon back to a (H, W) bool mask, flooring pixel coordinates as
    Ultralytics' ``polygon2mask`` does (labels put vertices at pixel centres, integer + 0.5)."""
    xy = [(int(x * width), int(y * height)) for x, y in zip(flat[::2], flat[1::2])]
    canvas = Image.new("1", (width, height))
    ImageDraw.Draw(canvas).polygon(xy, fill=1, outline=1)
    return np.asarray(canvas)


@pytest.fixture
def coco(dataset):
    return COCO(str(write_coco(dataset.root, dataset.manifest, list(CLASSES))))


def test_coco_masks_boxes_areas_match_the_instance_masks(dataset, coco):
    root, manifest = dataset.root, dataset.manifest
    assert sorted(coco.getImgIds()) == dataset.exported_ids
    for image_id in dataset.exported_ids:
        info = coco.loadImgs(image_id)[0]
        instance_map = _png(root / "masks" / "instance" / f"{image_id:06d}.png")
        semantic = _png(root / "masks" / "semantic" / f"{image_id:06d}.png")
        assert (info["height"], info["width"]) == instance_map.shape
        assert info["file_name"] == f"images/{image_id:06d}.png"
        anns = coco.loadAnns(coco.getAnnIds(imgIds=image_id))
        visible = set(np.unique(instance_map)) - {0}
        assert len(anns) == len(visible)
        for ann in anns:
            mask = coco.annToMask(ann).astype(bool)
            (k,) = np.unique(instance_map[mask])  # exactly one instance's pixels...
            assert np.array_equal(mask, instance_map == k)  # ...and all of them
            assert ann["bbox"] == _extent_xywh(mask)
            assert ann["area"] == mask.sum()
            assert ann["category_id"] == semantic[mask][0]
            assert ann["iscrowd"] == 0
            record = json.loads(manifest.loc[image_id, "instances"])[k - 1]
            assert ann["attributes"] == {key: record[key] for key in
                                         ("colour", "colour_source", "verify_iou")}


def test_coco_skips_hidden_instances_and_rejected_samples(dataset, coco):
    covered = dataset.special["covered"]
    assert len(dataset.layouts[covered].instances) == 2
    assert [a["category_id"] for a in coco.loadAnns(coco.getAnnIds(imgIds=covered))] == [2]
    assert coco.getAnnIds(imgIds=dataset.special["empty"]) == []
    assert 2 not in coco.getImgIds() and 3 not in coco.getImgIds()  # rejected, failed
    assert [c["name"] for c in coco.loadCats(coco.getCatIds())] == list(CLASSES)
    assert len({a["id"] for a in coco.dataset["annotations"]}) == len(coco.dataset["annotations"])


def test_coco_annotations_for_sample_handles_gaps_and_uint16_ids():
    instance_map = np.zeros((20, 30), dtype=np.uint16)
    instance_map[2:5, 3:9] = 300  # id 300: beyond uint8
    instance_map[10, 10] = 1
    instances = [{"category": "circle", "category_id": 1, "colour": None}] * 300
    anns = coco_annotations_for_sample(instance_map, instances, image_id=5, first_ann_id=11)
    assert [(a["id"], a["bbox"], a["area"]) for a in anns] == [
        (11, [10.0, 10.0, 1.0, 1.0], 1.0), (12, [3.0, 2.0, 6.0, 3.0], 18.0)]
    with pytest.raises(ValueError, match="sample 5: instance mask holds id 300"):
        coco_annotations_for_sample(instance_map, instances[:2], image_id=5, first_ann_id=1)


def test_coco_captions_and_second_write(dataset, coco):
    root, manifest = dataset.root, dataset.manifest
    captions = COCO(str(root / "annotations" / "captions.json"))
    for image_id in dataset.exported_ids:
        (ann,) = captions.loadAnns(captions.getAnnIds(imgIds=image_id))
        assert ann["caption"] == manifest.loc[image_id, "caption"]
    before = (root / "annotations" / "instances.json").read_bytes()
    write_coco(root, manifest, list(CLASSES))
    assert (root / "annotations" / "instances.json").read_bytes() == before


def test_coco_names_a_mask_whose_shape_differs_from_the_image(dataset):
    root, manifest = dataset.root, dataset.manifest
    path = root / "masks" / "instance" / "000004.png"
    atomic_save_png(path, np.zeros((10, 10), dtype=np.uint8))
    with pytest.raises(SampleReadError, match=f"sample 4: .*{path}.*shape"):
        write_coco(root, manifest, list(CLASSES))


def test_coco_rejects_a_category_list_that_disagrees_with_the_manifest(dataset):
    with pytest.raises(ValueError, match="category_id"):
        write_coco(dataset.root, dataset.manifest, list(reversed(CLASSES)))


@pytest.fixture
def yolo(dataset):
    return write_yolo(dataset.root, dataset.manifest, list(CLASSES))


def test_yolo_detect_labels_are_the_coco_boxes(dataset, coco, yolo):
    for image_id in dataset.exported_ids:
        info = coco.loadImgs(image_id)[0]
        width, height = info["width"], info["height"]
        rows = _yolo_rows(yolo / "detect" / "labels" / f"{image_id:06d}.txt")
        anns = coco.loadAnns(coco.getAnnIds(imgIds=image_id))
        assert len(rows) == len(anns)
        for row, ann in zip(rows, anns):  # both in drawing order
            x, y, w, h = ann["bbox"]
            expected = [ann["category_id"] - 1, (x + w / 2) / width, (y + h / 2) / height,
                        w / width, h / height]
            assert len(row) == 5
            np.testing.assert_allclose(row, expected, rtol=0, atol=1e-6)


def test_yolo_segment_polygons_fill_back_to_the_masks(dataset, coco, yolo):
    for image_id in dataset.exported_ids:
        info = coco.loadImgs(image_id)[0]
        rows = _yolo_rows(yolo / "segment" / "labels" / f"{image_id:06d}.txt")
        anns = coco.loadAnns(coco.getAnnIds(imgIds=image_id))
        assert len(rows) == len(anns)
        for row, ann in zip(rows, anns):
            assert len(row) % 2 == 1 and len(row) >= 7
            assert row[0] == ann["category_id"] - 1
            assert all(0 <= v <= 1 for v in row[1:])
            if image_id == dataset.special["split"]:
                continue  # its bridges are long next to its parts: see the next test
            mask = coco.annToMask(ann).astype(bool)
            filled = _rasterise(row[1:], info["height"], info["width"])
            iou = (mask & filled).sum() / (mask | filled).sum()
            assert iou > 0.8, (image_id, ann["id"], iou)


def test_yolo_joins_the_parts_of_a_split_instance(dataset, yolo):
    """A cross over a circle leaves four corners of 26 pixels each; the polygon keeps all four
    (the largest alone would be 1/4 of the mask) and its bridges run over the cross only."""
    split = dataset.special["split"]
    instance_map = dataset.layouts[split].instance_map
    circle, cross = instance_map == 1, instance_map == 2
    row = _yolo_rows(yolo / "segment" / "labels" / f"{split:06d}.txt")[0]
    filled = _rasterise(row[1:], *circle.shape)
    assert not (circle & ~filled).any()
    assert not (filled & ~circle & ~cross).any()


def test_mask_polygon_of_thin_regions_is_a_valid_row():
    mask = np.zeros((5, 6), dtype=bool)
    mask[2, 3] = True
    assert mask_polygon(mask).tolist() == [[3.5, 2.5]] * 3
    mask[2, 1:5] = True
    assert len(mask_polygon(mask)) == 3


def test_yolo_folders_lists_yaml_and_links(dataset, yolo):
    root, manifest = dataset.root, dataset.manifest
    for task in ("detect", "segment"):
        folder = yolo / task
        assert os.readlink(folder / "images") == "../../images"
        assert (folder / "images").resolve() == (root / "images").resolve()
        config = yaml.safe_load((folder / "data.yaml").read_text())
        assert "path" not in config
        assert config["nc"] == len(CLASSES) and config["names"] == dict(enumerate(CLASSES))
        listed = {}
        for split in ("train", "val"):
            lines = (folder / config[split]).read_text().splitlines()
            assert all(line.startswith("./images/") and (folder / line).is_file() for line in lines)
            listed[split] = [int(line[-10:-4]) for line in lines]
        exported = manifest.set_index("id").loc[dataset.exported_ids, "split"]
        assert listed == {s: exported.index[exported == s].tolist() for s in ("train", "val")}
        assert (folder / "labels" / f"{dataset.special['empty']:06d}.txt").read_text() == ""
        assert not (folder / "labels" / "000002.txt").exists()
    write_yolo(root, manifest, list(CLASSES))  # a second export replaces the link in place
    assert os.readlink(yolo / "detect" / "images") == "../../images"
