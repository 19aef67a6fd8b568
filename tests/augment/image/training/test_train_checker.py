"""The shapes checker trainer (``augment.image.training.checker``)."""

from __future__ import annotations

import json

import torch
import torch.nn.functional as F
from safetensors.torch import load_file

from augment.config.training import TrainCheckerSpec
from augment.image.checker import EMBEDDED_CHECKER, ShapesChecker, load_checker, predict, save_checker
from augment.image.training.augmentations import gaussian_blur
from augment.image.training.checker import train_checker
from augment.image.world import CLASSES


def test_spec_defaults_are_the_recipe_of_the_shipped_weights():
    recipe = json.loads((EMBEDDED_CHECKER / "training.json").read_text())["recipe"]
    defaults = TrainCheckerSpec().model_dump(mode="json")
    assert recipe.keys() - defaults.keys() == {"world"}
    assert {key: defaults[key] for key in recipe.keys() & defaults.keys()} == {
        key: recipe[key] for key in recipe.keys() & defaults.keys()}


def test_tiny_checker_trains_one_step_and_round_trips_exactly(tmp_path):
    torch.manual_seed(0)
    model = ShapesChecker(widths=(4, 8, 8))
    images = torch.rand(2, 3, 16, 16)
    labels = torch.randint(0, len(CLASSES) + 1, (2, 16, 16))
    class_logits, colour_logits = model(images)
    loss = F.cross_entropy(class_logits, labels) + F.cross_entropy(colour_logits, labels)
    loss.backward()
    torch.optim.SGD(model.parameters(), lr=0.1).step()
    assert torch.isfinite(loss)

    save_checker(model, tmp_path)
    assert all(t.dtype == torch.float16 for t in load_file(tmp_path / "model.safetensors").values())
    loaded = load_checker(tmp_path)
    assert not loaded.training and loaded.config == model.config
    for key, value in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value.half().float()), key
    assert torch.equal(predict(loaded, images)[0], predict(model.half().float().eval(), images)[0])


def test_gaussian_blur_keeps_flat_images_and_sigma_zero():
    images = torch.rand(2, 3, 8, 8)
    images[1] = 0.25
    blurred = gaussian_blur(images, torch.tensor([0.0, 1.0]))
    assert torch.allclose(blurred[0], images[0], atol=1e-6)
    assert torch.allclose(blurred[1], images[1], atol=1e-6)


def test_train_checker_end_to_end_writes_a_loadable_checker_and_is_seeded(tmp_path):
    spec = TrainCheckerSpec(num_scenes=16, steps=2, batch_size=4, widths=(4, 8, 8, 8), eval_scenes=4)
    report = train_checker(spec, tmp_path / "a", workers=1)
    train_checker(spec, tmp_path / "b", workers=1)
    assert json.loads((tmp_path / "a" / "training.json").read_text()) == report
    assert report["recipe"]["steps"] == 2 and report["held_out"]["num_scenes"] == 4
    assert 0.0 <= report["held_out"]["miou"] <= 1.0
    weights = [(tmp_path / run / "model.safetensors").read_bytes() for run in "ab"]
    assert weights[0] == weights[1]
    load_checker(tmp_path / "a")
