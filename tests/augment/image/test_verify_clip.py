"""CLIP crop verification: local safetensors only, scores equal a direct open_clip computation."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from pydantic import ValidationError

from augment.config import LayoutSpec, VerifySpec
from augment.image.layout_types import Instance, Layout
from augment.image.layouts import sample_layout
from augment.testing.tiny_sd import save_tiny_open_clip
from augment.image.world import CLASSES
from augment.image.verify_clip import TEMPLATE, crop_scores, instance_crop, load_clip


@pytest.fixture(scope="module")
def tiny_clip(tmp_path_factory):
    return save_tiny_open_clip(tmp_path_factory.mktemp("clip"))


def test_scores_are_the_true_class_probability_of_each_crop(tiny_clip):
    clip = load_clip(*tiny_clip)
    layouts = [sample_layout(LayoutSpec(objects_per_image=(2, 3)), 4, i) for i in range(2)]
    images = np.random.default_rng(0).integers(0, 256, (2, 64, 64, 3), dtype=np.uint8)
    scores = crop_scores(clip, images, layouts, list(CLASSES), margin=0.2)
    assert [len(s) for s in scores] == [len(layout.instances) for layout in layouts]
    # one instance by hand: crop, encode, cosine logits, softmax over the classes
    layout, k = layouts[1], 1
    crop = instance_crop(images[1], layout.instance_map == k + 1, 0.2)
    with torch.no_grad():
        image = clip.model.encode_image(clip.preprocess(crop)[None])
        text = clip.model.encode_text(clip.tokenizer([TEMPLATE.format(c) for c in CLASSES]))
        image, text = image / image.norm(dim=-1, keepdim=True), text / text.norm(dim=-1, keepdim=True)
        probs = (clip.model.logit_scale.exp() * image @ text.T).softmax(-1)[0]
    true = CLASSES.index(layout.instances[k].category)
    assert scores[1][k]["verify_clip"] == pytest.approx(float(probs[true]), abs=1e-5)
    assert scores[1][k]["clip_pred"] == CLASSES[int(probs.argmax())]


def test_a_hidden_instance_scores_zero(tiny_clip):
    hidden = Instance("circle", "red", cx=20, cy=20, radius=4, rotation=0.0)
    cover = Instance("square", "blue", cx=20, cy=20, radius=14, rotation=0.3)
    layout = Layout(64, 64, "plain", (hidden, cover))
    images = np.zeros((1, 64, 64, 3), dtype=np.uint8)
    (scores,) = crop_scores(load_clip(*tiny_clip), images, [layout], list(CLASSES))
    assert scores[0] == {"verify_clip": 0.0, "clip_pred": None} and scores[1]["verify_clip"] > 0


def test_crop_is_the_box_grown_by_the_margin():
    mask = np.zeros((30, 40), dtype=bool)
    mask[5:15, 10:20] = True
    image = np.zeros((30, 40, 3), dtype=np.uint8)
    assert instance_crop(image, mask, 0.1).size == (12, 12)  # x 9..21, y 4..16
    assert instance_crop(image, mask, 1.0).size == (30, 25)  # clipped at the image border


def test_only_local_safetensors_weights_load(tiny_clip, tmp_path):
    config, weights = tiny_clip
    pickle = tmp_path / "model.pt"
    pickle.write_bytes(b"not loaded")
    with pytest.raises(FileNotFoundError, match="verify.clip_checkpoint"):
        load_clip(str(config), pickle)
    with pytest.raises(FileNotFoundError, match="verify.clip_checkpoint"):
        load_clip(str(config), tmp_path / "missing.safetensors")
    with pytest.raises(ValueError, match="verify.clip_model"):
        load_clip("hf-hub:laion/CLIP-ViT-B-32-laion2B-s34B-b79K", weights)
    with pytest.raises(ValueError, match="unknown open_clip architecture"):
        load_clip("ViT-Nope", weights)
    with pytest.raises(ValidationError, match="safetensors"):
        VerifySpec(clip_checkpoint="weights.bin")
