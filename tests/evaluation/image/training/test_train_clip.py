"""The shapes CLIP trainer (``evaluation.image.training.clip``)."""

from __future__ import annotations

import json

import open_clip
import pytest
import torch

from augment.config.training import TrainClipSpec
from augment.image.clip import EMBEDDED_CLIP, EMBEDDED_NAME, load_clip
from augment.image.world import CLASSES, COLOURS
from evaluation.image.training.clip import crop_text_table, multi_positive_clip_loss, train_shapes_clip


def test_spec_defaults_are_the_recipe_of_the_shipped_weights():
    recipe = json.loads((EMBEDDED_CLIP / "training.json").read_text())["recipe"]
    defaults = TrainClipSpec().model_dump(mode="json")
    assert recipe.keys() - defaults.keys() == {"world", "crop_templates"}
    for key in recipe.keys() & defaults.keys():
        assert recipe[key] == defaults[key], key


def test_contrastive_loss_with_only_the_diagonal_is_clips_loss():
    rng = torch.Generator().manual_seed(0)
    image = torch.nn.functional.normalize(torch.randn(8, 16, generator=rng), dim=1)
    text = torch.nn.functional.normalize(torch.randn(8, 16, generator=rng), dim=1)
    ours = multi_positive_clip_loss(10.0 * image @ text.T, torch.eye(8, dtype=torch.bool))
    theirs = open_clip.ClipLoss()(image, text, torch.tensor(10.0))
    torch.testing.assert_close(ours, theirs)


def test_crop_prompts_name_what_they_claim():
    texts, shape, colour, row = crop_text_table()
    assert len(set(texts)) == len(texts)
    for t in range(row.shape[0]):
        for s in range(len(CLASSES)):
            for c in range(len(COLOURS)):
                text = texts[row[t, s, c]]
                assert shape[row[t, s, c]] in (-1, s) and colour[row[t, s, c]] in (-1, c)
                assert (CLASSES[s] in text) == (shape[row[t, s, c]] == s)
                assert (COLOURS[c] in text) == (colour[row[t, s, c]] == c)


@pytest.mark.slow
def test_training_is_deterministic_and_writes_a_loadable_model(tmp_path):
    spec = TrainClipSpec(seed=3, num_scenes=40, steps=2, batch_size=16, eval_scenes=16)
    report = train_shapes_clip(spec, tmp_path / "a", workers=1)
    train_shapes_clip(spec, tmp_path / "b", workers=1)
    weights = [(tmp_path / d / "open_clip_model.safetensors").read_bytes() for d in "ab"]
    assert weights[0] == weights[1]
    assert json.loads((tmp_path / "a" / "training.json").read_text())["held_out"] == report["held_out"]
    model, _, _ = load_clip(EMBEDDED_NAME, tmp_path / "a" / "open_clip_model.safetensors")
    assert next(model.parameters()).dtype == torch.float32
