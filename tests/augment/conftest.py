"""The ``dataset`` fixture: a small dataset folder built from real layouts, as the generation code
writes it (minus the model: images are the procedural renders of the layouts).

Tests take what they need from the fixture rather than importing this module, which pytest may
have loaded under a name shared with other folders' conftest files."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from augment.config.image import ShapesLayoutSpec
from augment.core.io import atomic_save_png, atomic_write_json
from augment.image.layout_types import Instance, Layout
from augment.image.layouts import render_scene, sample_layout
from augment.image.world import CLASSES

SPEC = ShapesLayoutSpec(height=48, width=64)  # not square, so a swapped H/W shows up
SEED = 7
N_SAMPLED = 8


def special_layouts() -> dict[str, Layout]:
    """Layouts the sampler never draws but a dataset may hold."""
    h, w = SPEC.height, SPEC.width
    square = Instance("square", "blue", cx=20, cy=20, radius=14, rotation=0.3)
    tiny = Instance("circle", "green", cx=20, cy=20, radius=4, rotation=0.0)
    return {
        # the circle is drawn first, then hidden entirely: zero visible pixels
        "covered": Layout(h, w, "plain", (tiny, square)),
        # a cross over a circle leaves four separate corners of the circle visible
        "split": Layout(h, w, "stripes", (
            Instance("circle", "red", cx=32, cy=24, radius=18, rotation=0.0),
            Instance("cross", "yellow", cx=32, cy=24, radius=26, rotation=0.0))),
        "empty": Layout(h, w, "noise", ()),
    }


def instance_records(layout: Layout, rng: np.random.Generator) -> list[dict]:
    return [{"category": inst.category, "category_id": CLASSES.index(inst.category) + 1,
             "colour": inst.colour, "colour_source": "condition",
             "verify_iou": float(rng.uniform(0.5, 1.0))} for inst in layout.instances]


def build_dataset(root: Path) -> tuple[pd.DataFrame, dict[int, Layout]]:
    """Write images, masks, dataset.json and manifest.parquet under ``root``.

    Samples 0..7 are sampled layouts, then "covered", "split", "empty"; sample 2 is
    rejected by verification (kept False) and sample 3 failed (no files written).
    """
    layouts = [sample_layout(SPEC, SEED, i) for i in range(N_SAMPLED)]
    layouts += list(special_layouts().values())
    rng = np.random.default_rng(0)
    rows, by_id = [], {}
    for sample_id, layout in enumerate(layouts):
        stem = f"{sample_id:06d}"
        status = "failed" if sample_id == 3 else "ok"
        if status == "ok":
            atomic_save_png(root / "images" / f"{stem}.png", render_scene(layout))
            atomic_save_png(root / "masks" / "semantic" / f"{stem}.png", layout.semantic_map)
            atomic_save_png(root / "masks" / "instance" / f"{stem}.png", layout.instance_map)
        rows.append({
            "id": sample_id, "image": f"images/{stem}.png",
            "semantic_mask": f"masks/semantic/{stem}.png",
            "instance_mask": f"masks/instance/{stem}.png",
            "split": "val" if sample_id % 4 == 1 else "train",
            "caption": layout.caption if layout.instances else "an empty scene",
            "layout": layout.to_json(),
            "instances": json.dumps(instance_records(layout, rng)),
            "kept": sample_id != 2, "status": status, "seed": SEED, "backend": "procedural",
        })
        by_id[sample_id] = layout
    manifest = pd.DataFrame(rows)
    manifest.to_parquet(root / "manifest.parquet")
    atomic_write_json(root / "dataset.json", {"name": root.name, "categories": list(CLASSES)})
    return manifest, by_id


@dataclass
class FakeDataset:
    root: Path
    manifest: pd.DataFrame  # index = id
    layouts: dict[int, Layout]
    exported_ids: list[int]  # kept and ok, in id order
    special: dict[str, int]  # id of each special layout


@pytest.fixture(scope="module")
def one_thread():
    """Tiny models are all per-op overhead: one thread is faster than two fighting for cores."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def dataset(tmp_path) -> FakeDataset:
    root = tmp_path / "shapes"
    manifest, layouts = build_dataset(root)
    special = {name: N_SAMPLED + i for i, name in enumerate(special_layouts())}
    return FakeDataset(root, manifest, layouts, [i for i in layouts if i not in (2, 3)], special)


def write_coco_file(path: Path) -> Path:
    """A small COCO instances file: non-contiguous category ids listed out of order, polygons,
    uncompressed and compressed RLE, a crowd annotation, and an image with only a crowd."""
    from pycocotools import mask as mask_utils

    car = np.zeros((40, 60), dtype=np.uint8, order="F")
    car[20:36, 30:58] = 1
    car_rle = mask_utils.encode(car)
    dog = np.zeros((40, 60), dtype=np.uint8)
    dog[2:12, 40:55] = 1
    flat = dog.flatten(order="F")  # uncompressed RLE counts: runs of 0, 1, 0, ... in F order
    changes = np.flatnonzero(np.diff(flat)) + 1
    counts = np.diff(np.concatenate([[0], changes, [flat.size]])).tolist()
    annotations = [
        {"id": 1, "image_id": 10, "category_id": 1, "iscrowd": 0, "area": 600.0,
         "segmentation": [[5, 5, 25, 5, 25, 35, 5, 35]]},
        {"id": 2, "image_id": 10, "category_id": 18, "iscrowd": 0, "area": 150.0,
         "segmentation": {"size": [40, 60], "counts": counts}},
        {"id": 3, "image_id": 10, "category_id": 3, "iscrowd": 0, "area": 448.0,
         "segmentation": {"size": [40, 60], "counts": car_rle["counts"].decode("ascii")}},
        {"id": 4, "image_id": 20, "category_id": 18, "iscrowd": 0, "area": 900.0,
         "segmentation": [[10, 10, 40, 10, 40, 40, 10, 40]]},
        {"id": 5, "image_id": 30, "category_id": 1, "iscrowd": 1, "area": 100.0,
         "segmentation": [[0, 0, 10, 0, 10, 10, 0, 10]]},
    ]
    coco = {"images": [{"id": 10, "height": 40, "width": 60, "file_name": "a.jpg"},
                       {"id": 20, "height": 50, "width": 50, "file_name": "b.jpg"},
                       {"id": 30, "height": 30, "width": 30, "file_name": "c.jpg"}],
            "categories": [{"id": 18, "name": "dog"}, {"id": 1, "name": "person"},
                           {"id": 3, "name": "car"}],
            "annotations": annotations}
    path.write_text(json.dumps(coco))
    return path


@pytest.fixture
def coco_file(tmp_path) -> Path:
    return write_coco_file(tmp_path / "instances.json")
