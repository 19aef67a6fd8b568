"""Behaviour pinned: two small runs give the outputs the code gave before the modality refactor.

``tests/data/pinned_small_runs.json`` was computed from the same two jobs run with the code as it
stood before ``augment/core`` existed (commit 8158200). Procedural renders, masks, layouts, COCO
and YOLO files must match byte for byte; the shapes-tiny pixels and checker scores, which go
through float kernels that may differ between CPUs, within a small tolerance.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from augment.config.image import ImageJob
from augment.core.shards import generate_dataset

PINNED = json.loads((Path(__file__).parents[2] / "data" / "pinned_small_runs.json").read_text())
LABEL_COLUMNS = ["id", "image", "semantic_mask", "instance_mask", "split", "seed", "noise_seed",
                 "backend", "dtype", "scheduler", "steps", "guidance", "eta", "noise_temperature",
                 "caption", "prompt", "layout", "num_instances", "verify_method", "status"]
BASE = dict(num_samples=8, seed=3, shard_size=4,
            sampler=dict(steps=4, batch_size=4, guidance=3.0, scheduler="dpmsolver++"))
JOBS = {"world": dict(BASE, name="world", model=dict(backend="shapes-world"),
                      verify=dict(enabled=False)),
        "tiny": dict(BASE, name="tiny", layout=dict(colour_unspecified=0.2))}


def short_sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:16]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    out = tmp_path_factory.mktemp("pinned")
    made = {name: generate_dataset(ImageJob.model_validate(job), out)[0]
            for name, job in JOBS.items()}
    return {name: (name, root, pd.read_parquet(root / "manifest.parquet"))
            for name, root in made.items()}


@pytest.fixture(params=sorted(JOBS))
def run(request, runs):
    return runs[request.param]


def test_labels_and_how_each_sample_was_made_are_unchanged(run):
    name, _, manifest = run
    text = manifest[LABEL_COLUMNS].to_json(orient="records")
    assert short_sha(text.encode()) == PINNED[name]["manifest_label_columns"]


def test_files_are_byte_identical(run):
    name, root, _ = run
    for rel, digest in PINNED[name]["files"].items():
        assert short_sha((root / rel).read_bytes()) == digest, rel
    if name == "world":  # everything but the manifest: images, masks, COCO, YOLO
        written = {str(f.relative_to(root)) for f in root.rglob("*") if f.is_file()
                   and ".synthmill" not in f.parts and f.name not in (".lock", "manifest.parquet",
                                                                     "dataset.json")}
        assert written == set(PINNED[name]["files"])


def test_generated_pixels_and_checker_scores_are_unchanged(runs):
    name, root, manifest = runs["tiny"]
    for image, means in PINNED[name]["image_channel_means"].items():
        pixels = np.asarray(Image.open(root / image)).reshape(-1, 3).mean(0)
        np.testing.assert_allclose(pixels, means, atol=0.5, err_msg=image)
    scores = [[i["verify_iou"] for i in json.loads(t)] for t in manifest["instances"]]
    for got, want in zip(scores, PINNED[name]["verify_iou"], strict=True):
        np.testing.assert_allclose(got, want, atol=0.05)
