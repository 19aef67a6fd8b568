"""The shapes-features trainer (``evaluation.image.training.shapes_features``)."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from augment.config.training import TrainShapesFeaturesSpec
from augment.core.io import sha256_file
from augment.image.checker import EMBEDDED_CHECKER
from evaluation.image.shapes_features import (CLASS_NAMES, EMBEDDED_SHAPES_FEATURES, extract,
                                              load_shapes_features, weights_sha256)
from evaluation.image.training.shapes_features import train_shapes_features


@pytest.fixture(scope="module")
def model():
    return load_shapes_features()


def test_embedded_weights_are_small_fp16_and_match_the_recipe_defaults(model):
    weights = EMBEDDED_SHAPES_FEATURES / "model.safetensors"
    assert weights.stat().st_size < 1_000_000
    assert {t.dtype for t in load_file(weights).values()} <= {torch.float16, torch.int64}
    report = json.loads((EMBEDDED_SHAPES_FEATURES / "training.json").read_text())
    assert report["parameters"] == sum(p.numel() for p in model.parameters())
    recipe, defaults = report["recipe"], TrainShapesFeaturesSpec().model_dump(mode="json")
    assert recipe.keys() - defaults.keys() == {"world", "checker_sha256"}
    for key in recipe.keys() & defaults.keys():
        assert recipe[key] == defaults[key], key
    assert recipe["checker_sha256"] == sha256_file(EMBEDDED_CHECKER / "model.safetensors")
    assert report["held_out"]["accuracy"] >= 0.9
    assert len(weights_sha256()) == 64


def test_training_is_deterministic_and_round_trips(tmp_path):
    spec = TrainShapesFeaturesSpec(num_scenes=48, steps=2, batch_size=8, widths=(4, 8, 8), feature_dim=8,
                                   eval_scenes=16)
    report = train_shapes_features(spec, tmp_path / "a", workers=1)
    train_shapes_features(spec, tmp_path / "b", workers=1)
    weights = [tmp_path / run / "model.safetensors" for run in ("a", "b")]
    assert weights[0].read_bytes() == weights[1].read_bytes()
    assert weights_sha256(tmp_path / "a") == weights_sha256(tmp_path / "b" / "model.safetensors")
    assert json.loads((tmp_path / "a" / "training.json").read_text())["held_out"] == report["held_out"]
    out = extract(load_shapes_features(tmp_path / "a"), torch.zeros(2, 3, 32, 32, dtype=torch.uint8))
    dim = 8 + report["recipe"]["background_dim"]  # scene features + background branch
    assert out["features"].shape == (2, dim) and out["logits_unbiased"].shape == (2, len(CLASS_NAMES))
