"""Per-sample seeds: every sample of a run gets its own noise, and a seed gives the same pixels."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from PIL import Image

import augment.core.shards as gen
from augment.config.image import ImageJob, ImageSamplerSpec
from augment.core.seeds import child_seed, sample_seeds
from augment.image.generation import ImageHooks
from augment.image.layouts import sample_layout


def test_every_sample_and_run_gets_its_own_seeds():
    seeds = [sample_seeds(3, i) for i in range(1000)]
    layout, noise = zip(*seeds)
    assert len(set(noise)) == len(set(layout)) == 1000 and not set(noise) & set(layout)
    assert seeds == [sample_seeds(3, i) for i in range(1000)]
    assert not set(noise) & {sample_seeds(4, i)[1] for i in range(1000)}
    assert all(0 <= s < 2**63 for s in layout + noise)
    parts = [child_seed(noise[0], k) for k in range(1, 100)]
    assert len(set(parts)) == 99 and noise[0] not in parts


# one diffusion step without guidance: the output still depends on every value of the noise
JOB = ImageJob(name="seeds", num_samples=2, shard_size=2, seed=3,
               sampler=ImageSamplerSpec(steps=1, batch_size=2, guidance=1.0),
               verify={"enabled": False})


def generated_images(out, monkeypatch) -> tuple[pd.DataFrame, list[np.ndarray]]:
    """JOB with the layout of sample 0 for every sample: the samples differ in their noise only."""
    layout = sample_layout(JOB.layout, JOB.seed, 0)
    monkeypatch.setattr(ImageHooks, "condition", lambda self, job, index: layout)
    root, _ = gen.generate_dataset(JOB, out)
    manifest = pd.read_parquet(root / "manifest.parquet")
    assert manifest["layout"].nunique() == 1
    return manifest, [np.asarray(Image.open(root / p), dtype=np.int16) for p in manifest["image"]]


def test_same_layout_with_other_noise_seeds_gives_other_pixels(tmp_path, monkeypatch):
    manifest, (a, b) = generated_images(tmp_path / "first", monkeypatch)
    assert list(manifest["noise_seed"]) == [sample_seeds(JOB.seed, i)[1] for i in (0, 1)]
    assert (np.abs(a - b) > 10).mean() > 0.5  # most pixels differ by more than 10 levels
    again, images = generated_images(tmp_path / "again", monkeypatch)
    assert list(again["noise_seed"]) == list(manifest["noise_seed"])
    assert all(np.array_equal(x, y) for x, y in zip((a, b), images))  # the same seeds: same pixels
