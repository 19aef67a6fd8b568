"""Verification decides what a dataset exports: a sample scoring under ``verify.min_score`` is
marked not kept and left out of COCO and YOLO."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

import augment.core.shards as gen
from augment.config.image import ImageJob, ImageSamplerSpec, ShapesLayoutSpec
from augment.core.seeds import sample_seeds
from augment.image.layouts import render_scene

# every colour left open: no colour check, so the score alone decides what is kept
JOB = ImageJob(name="kept", num_samples=4, shard_size=4, seed=3,
               sampler=ImageSamplerSpec(steps=2, batch_size=4),
               layout=ShapesLayoutSpec(colour_unspecified=1.0),
               verify={"method": "checker", "min_score": 0.5})
BLANKED = 1  # the sample rendered as flat grey: the checker finds none of its shapes


class RealScenesButOne:
    """A backend that renders each layout as the real procedural scene the checker was trained
    on, except sample ``BLANKED``, which it renders as a flat grey image."""

    model_id, weights = "fake", "0" * 16

    def render(self, layouts, sampler, seeds, force_fp32=False):
        blanked = sample_seeds(JOB.seed, BLANKED)[1]
        return np.stack([np.full((64, 64, 3), 0.5) if seed == blanked else
                         render_scene(layout, colour_rng=np.random.default_rng(seed)) / 255
                         for layout, seed in zip(layouts, seeds)])

    def prompt(self, layout, sampler):
        return None


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(gen, "load_backend", lambda spec: RealScenesButOne())
        root, _ = gen.generate_dataset(JOB, tmp_path_factory.mktemp("out"))
    return root, pd.read_parquet(root / "manifest.parquet").set_index("id")


def test_a_sample_under_min_score_is_not_kept(made):
    _, manifest = made
    blanked = manifest.loc[BLANKED]
    instances = json.loads(blanked["instances"])
    assert instances and blanked["status"] == "ok"
    assert max(i["verify_iou"] for i in instances) < JOB.verify.min_score
    assert all(i["colour_ok"] is None for i in instances)
    assert not blanked["kept"]
    real = manifest.drop(index=BLANKED)
    assert real["kept"].all() and (real["verify_min_iou"] >= JOB.verify.min_score).all()


def test_a_sample_not_kept_is_left_out_of_coco_and_yolo(made):
    root, manifest = made
    kept = sorted(manifest.index[manifest["kept"]])
    assert BLANKED not in kept and len(kept) == JOB.num_samples - 1
    coco = json.loads((root / "annotations" / "instances.json").read_text())
    assert sorted(im["id"] for im in coco["images"]) == kept
    assert BLANKED not in {a["image_id"] for a in coco["annotations"]}
    for task in ("detect", "segment"):
        folder = root / "yolo" / task
        labels = sorted(int(p.stem) for p in (folder / "labels").glob("*.txt"))
        listed = sorted(int(line.rsplit("/", 1)[1].removesuffix(".png"))
                        for split in ("train", "val")
                        for line in (folder / f"{split}.txt").read_text().split())
        assert labels == listed == kept, task
