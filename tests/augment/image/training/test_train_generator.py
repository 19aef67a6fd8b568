"""The shapes-tiny trainer (``augment.image.training.generator``)."""

from __future__ import annotations

import json

import torch
from safetensors.torch import load_file

from augment.config.training import TrainShapesSpec
from augment.image.backends.shapes_tiny import EMBEDDED_SHAPES_TINY
from augment.image.pipelines.shapes_tiny import ShapesTinyPipeline
from augment.image.training.generator import train_shapes_generator


def test_spec_defaults_are_the_recipe_of_the_shipped_weights():
    recipe = json.loads((EMBEDDED_SHAPES_TINY / "training.json").read_text())["recipe"]
    defaults = TrainShapesSpec().model_dump(mode="json")
    assert recipe.keys() <= defaults.keys()
    recipe_fields = recipe.keys() - {"device"}  # trained on a GPU; the default picks one if present
    assert {key: defaults[key] for key in recipe_fields} == {key: recipe[key] for key in recipe_fields}


def test_training_runs_saves_fp16_safetensors_and_is_seeded(tmp_path):
    spec = TrainShapesSpec(resolution=32, steps=2, batch_size=4, num_scenes=16, warmup_steps=1,
                           block_out_channels=(8, 16), device="cpu", log_every=1)
    a = train_shapes_generator(spec, tmp_path / "a", workers=1)
    b = train_shapes_generator(spec, tmp_path / "b", workers=1)

    wa = load_file(next((a / "unet").glob("*.safetensors")))
    wb = load_file(next((b / "unet").glob("*.safetensors")))
    assert all(t.dtype == torch.float16 for t in wa.values())
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    assert (a / "training_log.csv").read_text().count("\n") == 3  # header + 2 logged steps
    pipe = ShapesTinyPipeline.from_pretrained(a)
    assert pipe.scheduler.config.thresholding  # x0 clipping travels with the model
