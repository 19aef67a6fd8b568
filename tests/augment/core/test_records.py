"""Sample records: a manifest row holds everything that made its sample, and ``replay`` remakes
the sample from that row alone."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from augment.config.image import ImageJob
from augment.core.records import SampleRecord, replay
from augment.core.shards import generate_dataset


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    job = ImageJob.model_validate(dict(
        name="replayed", num_samples=4, shard_size=4, seed=11,
        sampler=dict(steps=3, batch_size=2, scheduler="unipc", guidance=2.0, eta=0.0),
        layout=dict(objects_per_image=(1, 3), colour_unspecified=0.5)))
    root, _ = generate_dataset(job, tmp_path_factory.mktemp("out"))
    return root, pd.read_parquet(root / "manifest.parquet")


def test_a_row_round_trips_through_its_record(made):
    _, manifest = made
    for row in manifest.to_dict("records"):
        again = SampleRecord.from_row(row).to_row()
        assert list(again) == list(row)
        for key, value in row.items():
            assert again[key] == value or (pd.isna(value) and again[key] is None), key


def test_replay_regenerates_a_sample_from_its_row_alone(made):
    root, manifest = made
    for index in (1, 2):  # the second sample of a batch of two, and the first of the next
        row = manifest.iloc[index].to_dict()
        image = replay(row)
        stored = np.asarray(Image.open(root / row["image"]))
        assert image.dtype == np.uint8 and image.shape == stored.shape
        diff = np.abs(image.astype(int) - stored)
        # a batch of one against a batch of two: only float rounding of the kernels differs
        assert diff.max() <= 3 and diff.mean() < 0.05


def test_replay_refuses_other_weights(made):
    _, manifest = made
    row = manifest.iloc[0].to_dict()
    row["weights_sha256"] = "0" * 16
    with pytest.raises(ValueError, match="cannot be replayed"):
        replay(row)


def test_a_row_without_its_settings_is_an_error_naming_the_column(made):
    _, manifest = made
    row = manifest.iloc[0].to_dict()
    del row["sampler_spec"]
    with pytest.raises(KeyError, match="sampler_spec"):
        SampleRecord.from_row(row)
