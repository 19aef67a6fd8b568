"""CLIP crop verification (the crop, template and loader evaluation uses too): local safetensors
only, scores equal a direct open_clip computation on the same crop."""

from __future__ import annotations

import numpy as np
import open_clip
import pytest
import torch
from pydantic import ValidationError

from augment.config.image import ShapesLayoutSpec, VerifySpec
from augment.image.clip import (TEMPLATE, crop_boxes, crop_images, crop_scores, input_size,
                                load_clip)
from augment.image.layout_types import Instance, Layout
from augment.image.layouts import sample_layout
from augment.image.world import CLASSES
from augment.testing.tiny_sd import save_tiny_open_clip


@pytest.fixture(scope="module")
def tiny_clip(tmp_path_factory):
    return save_tiny_open_clip(tmp_path_factory.mktemp("clip"))


def test_scores_are_the_true_class_probability_of_each_crop(tiny_clip):
    clip = load_clip(*tiny_clip)
    model, _, tokenizer = clip
    layouts = [sample_layout(ShapesLayoutSpec(objects_per_image=(2, 3)), 4, i) for i in range(2)]
    images = np.random.default_rng(0).integers(0, 256, (2, 64, 64, 3), dtype=np.uint8)
    scores = crop_scores(clip, images, layouts, list(CLASSES), margin=0.2)
    assert [len(s) for s in scores] == [len(layout.instances) for layout in layouts]
    # one instance by hand: its square crop, encode, cosine logits, softmax over the classes
    layout, k = layouts[1], 1
    ys, xs = np.nonzero(layout.instance_map == k + 1)
    side = max(xs.max() + 1 - xs.min(), ys.max() + 1 - ys.min()) * 1.4
    cx, cy = (xs.min() + xs.max() + 1) / 2, (ys.min() + ys.max() + 1) / 2
    box = np.array([[cx - side / 2, cy - side / 2, cx + side / 2, cy + side / 2]])
    box[:, [0, 2]] -= min(box[0, 0], 0) + max(box[0, 2] - 64, 0)  # shifted inside, not clipped
    box[:, [1, 3]] -= min(box[0, 1], 0) + max(box[0, 3] - 64, 0)
    np.testing.assert_allclose(crop_boxes(instance_map=layout.instance_map, margin=0.2)[k], box[0],
                               atol=1e-4)
    crop = crop_images(images[1:], [box.astype(np.float32)], input_size(model))  # (1, 3, S, S)
    cfg = open_clip.get_model_preprocess_cfg(model)
    mean, std = (torch.tensor(cfg[k])[:, None, None] for k in ("mean", "std"))
    with torch.no_grad():
        image = model.encode_image((crop - mean) / std)
        text = model.encode_text(tokenizer([TEMPLATE.format(c) for c in CLASSES]))
        image, text = image / image.norm(dim=-1, keepdim=True), text / text.norm(dim=-1, keepdim=True)
        probs = (model.logit_scale.exp() * image @ text.T).softmax(-1)[0]
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


def test_only_local_safetensors_weights_load(tiny_clip, tmp_path):
    config, weights = tiny_clip
    pickle = tmp_path / "model.pt"
    pickle.write_bytes(b"not loaded")
    with pytest.raises(ValueError, match="only .safetensors checkpoints are loaded"):
        load_clip(str(config), pickle)
    with pytest.raises(FileNotFoundError, match="missing.safetensors: CLIP checkpoint not found"):
        load_clip(str(config), tmp_path / "missing.safetensors")
    with pytest.raises(ValueError, match="would load weights from elsewhere"):
        load_clip("hf-hub:laion/CLIP-ViT-B-32-laion2B-s34B-b79K", weights)
    with pytest.raises(ValueError, match="unknown open_clip architecture"):
        load_clip("ViT-Nope", weights)
    with pytest.raises(ValidationError, match="safetensors"):
        VerifySpec(clip_checkpoint="weights.bin")
