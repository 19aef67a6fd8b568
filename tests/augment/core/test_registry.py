"""The registry: every name a config can choose resolves to its settings model and loader, and a
new backend is one module plus one registry entry (the example below is both)."""

from __future__ import annotations

import json
from typing import Literal

import numpy as np
import pandas as pd
import pytest
from pycocotools.coco import COCO

from augment.config.base import BackendSpec, ConfigError, validate
from augment.config.image import ImageJob
from augment.core.records import replay
from augment.core.registry import BACKENDS, EXPORTERS, LABEL_KINDS, MODALITIES, Backend, Registry
from augment.core.shards import generate_dataset
from augment.image.world import PALETTE


# --- an example backend: this block and the registry entry in the fixture are all it takes ----
class FlatSpec(BackendSpec):
    """``flat``: every instance painted in its colour (grey when left open) on a plain ground."""

    backend: Literal["flat"] = "flat"
    ground: int = 128


class FlatBackend:
    model_id, weights = "flat painter", "none"

    def __init__(self, spec: FlatSpec):
        self.ground = spec.ground

    def render(self, layouts, sampler, seeds, force_fp32=False) -> np.ndarray:
        images = np.full((len(layouts), layouts[0].height, layouts[0].width, 3), self.ground,
                         np.float32)
        for image, layout in zip(images, layouts):
            for k, inst in enumerate(layout.instances):
                image[layout.instance_map == k + 1] = PALETTE.get(inst.colour, (90, 90, 90))
        return images / 255.0

    def prompt(self, layout, sampler) -> None:
        return None
# ------------------------------------------------------------------------------------------------


@pytest.fixture
def flat():
    entry = BACKENDS.add(Backend("flat", "image", spec=FlatSpec, loader=FlatBackend,
                                 labels="masks", conditions=("shapes",), verify="checker"))
    yield entry
    BACKENDS.remove("flat")


@pytest.mark.parametrize("entry", list(BACKENDS), ids=lambda e: e.name)
def test_every_backend_resolves_its_settings_model_and_loader(entry):
    spec = entry.spec_model()
    assert issubclass(spec, BackendSpec) and entry.labels in LABEL_KINDS
    assert spec.model_fields["backend"].default == entry.name
    assert callable(entry.__class__.load) and entry.modality in MODALITIES
    from augment.core.registry import resolve

    assert callable(resolve(entry.loader))


@pytest.mark.parametrize("entry", list(EXPORTERS), ids=lambda e: e.name)
def test_every_exporter_resolves(entry):
    from augment.core.registry import resolve

    assert callable(resolve(entry.writer)) and set(entry.labels) <= set(LABEL_KINDS)


def test_an_unknown_name_lists_the_allowed_ones():
    with pytest.raises(ValueError, match=r"unknown backend 'nope'; allowed: \['shapes-tiny'"):
        BACKENDS.get("nope")
    registry = Registry("thing")
    registry.add(Backend("a", "image", spec=FlatSpec, loader=FlatBackend))
    with pytest.raises(ValueError, match="already registered"):
        registry.add(Backend("a", "image", spec=FlatSpec, loader=FlatBackend))


def test_a_setting_of_another_backend_is_an_error_naming_it():
    with pytest.raises(ConfigError, match=r"job: model.controlnet: unknown key"):
        validate(ImageJob, {"model": {"backend": "shapes-tiny", "controlnet": "x/y"}}, "job")
    with pytest.raises(ConfigError, match=r"model: unknown backend 'shapes-huge'; allowed"):
        validate(ImageJob, {"model": {"backend": "shapes-huge"}}, "job")


def test_a_registered_backend_makes_a_whole_dataset(flat, tmp_path):
    job = validate(ImageJob, {"name": "flat-set", "num_samples": 6, "shard_size": 3,
                              "model": {"backend": "flat", "ground": 100},
                              "layout": {"colour_unspecified": 0.0}}, "job")
    root, summary = generate_dataset(job, tmp_path)
    manifest = pd.read_parquet(root / "manifest.parquet")
    assert (manifest["backend"] == "flat").all() and summary["counts"]["samples"] == 6
    # the checker verified the flat renders (most pass: they are plain palette-coloured shapes)
    assert (manifest["verify_method"] == "checker").all() and summary["counts"]["kept"] >= 3
    coco = COCO(str(root / "annotations" / "instances.json"))
    assert len(coco.getImgIds()) == summary["counts"]["kept"]
    assert (root / "yolo" / "segment" / "data.yaml").is_file()
    assert json.loads(manifest["model_spec"].iloc[0])["ground"] == 100
    row = manifest.iloc[2].to_dict()
    from PIL import Image

    assert np.array_equal(replay(row), np.asarray(Image.open(root / row["image"])))
