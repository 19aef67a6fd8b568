"""The shapes checker: embedded weights on unseen real scenes, instance scores, mIoU, save/load."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file

from augment.image.layout_types import Instance, Layout

from augment.image.layouts import sample_layout
from augment.image.checker import (ShapesChecker, confusion_matrix, load_checker,
                                    miou_from_confusion, predict, save_checker, score_instances)
from augment.image.world import CLASSES, COLOURS
from augment.image.training.checker import scene_label_maps
from augment.image.training.scenes import render_scenes, world_layout_spec

UNSEEN_SEED = 9_876  # neither the training seed (0) nor the held-out one (1)


def _layout() -> Layout:
    """Two red circles (one partly hidden by a blue square) and a circle-free corner."""
    return Layout(height=64, width=64, background="plain", instances=(
        Instance("circle", "red", cx=18.0, cy=18.0, radius=10.0, rotation=0.0),
        Instance("circle", "red", cx=44.0, cy=20.0, radius=9.0, rotation=0.0),
        Instance("square", "blue", cx=50.0, cy=28.0, radius=9.0, rotation=0.3),
    ))


def _colour_map(layout: Layout) -> np.ndarray:
    """(H, W) colour ids as the checker predicts them: 0 = none, k = COLOURS[k-1]."""
    lut = np.array([0] + [1 + COLOURS.index(inst.colour) for inst in layout.instances])
    return lut[layout.instance_map]


def test_embedded_checker_segments_unseen_real_scenes():
    world = world_layout_spec(64, skewed=False)
    scenes = render_scenes(world, UNSEEN_SEED, 0, 48)
    semantic_true, _ = scene_label_maps(scenes)
    semantic, colour = predict(load_checker(), scenes.images.transpose(0, 2, 3, 1).copy())
    miou, _ = miou_from_confusion(confusion_matrix(semantic, semantic_true, len(CLASSES) + 1))
    scores = [s for i in range(len(scenes)) for s in
              score_instances(semantic[i], colour[i], sample_layout(world, UNSEEN_SEED, i))]
    assert miou >= 0.9
    assert np.mean([s["colour_ok"] for s in scores]) >= 0.95
    assert np.mean([s["verify_iou"] >= 0.5 for s in scores]) >= 0.95


def test_predict_accepts_uint8_and_float_and_is_batch_invariant():
    model = ShapesChecker(widths=(4, 8)).eval()
    images = np.random.default_rng(0).integers(0, 256, (3, 16, 24, 3), dtype=np.uint8)
    as_float = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255.0
    semantic, colour = predict(model, images)
    assert semantic.shape == colour.shape == (3, 16, 24) and semantic.dtype == torch.long
    for a, b in zip((semantic, colour), predict(model, as_float, batch_size=1)):
        assert torch.equal(a, b)


def test_checker_rejects_sides_not_divisible_by_its_depth():
    with pytest.raises(ValueError, match="divisible by 8"):
        ShapesChecker()(torch.zeros(1, 3, 60, 64))


def test_perfect_prediction_verifies_every_instance():
    layout = _layout()
    scores = score_instances(layout.semantic_map, _colour_map(layout), layout)
    assert [s["verify_iou"] for s in scores] == [1.0, 1.0, 1.0]
    assert [s["colour_pred"] for s in scores] == ["red", "red", "blue"]
    assert [s["colour_ok"] for s in scores] == [True, True, True]
    assert [s["area"] for s in scores] == [int(m.sum()) for m in layout.visible_masks()]


def test_stray_blob_of_same_class_lowers_every_instance_of_that_class():
    layout = _layout()
    semantic = layout.semantic_map.copy()
    assert not semantic[52:60, 4:12].any()
    semantic[52:60, 4:12] = CLASSES.index("circle") + 1  # an unlabeled circle-ish blob
    scores = score_instances(semantic, _colour_map(layout), layout)
    for score in scores[:2]:
        assert score["verify_iou"] == pytest.approx(score["area"] / (score["area"] + 64))
    assert scores[2]["verify_iou"] == 1.0


def test_erased_part_of_an_instance_lowers_its_score_by_the_erased_share():
    layout = _layout()
    semantic = layout.semantic_map.copy()
    first = layout.instance_map == 1
    erased = first & (np.arange(64)[:, None] < 14)
    semantic[erased] = 0
    scores = score_instances(semantic, _colour_map(layout), layout)
    area = int(first.sum())
    assert scores[0]["verify_iou"] == pytest.approx((area - erased.sum()) / area)
    assert [s["verify_iou"] for s in scores[1:]] == [1.0, 1.0]


def test_wrong_or_unspecified_colour():
    layout = _layout()
    colour = _colour_map(layout)
    colour[layout.instance_map == 3] = 1 + COLOURS.index("green")
    colour[(layout.instance_map == 1) & (np.arange(64)[None, :] < 20)] = 0  # no-colour votes
    scores = score_instances(layout.semantic_map, colour, layout)
    assert (scores[2]["colour_pred"], scores[2]["colour_ok"]) == ("green", False)
    assert (scores[0]["colour_pred"], scores[0]["colour_ok"]) == ("red", True)
    unspecified = Layout(64, 64, "plain", (Instance("star", None, 32.0, 32.0, 12.0, 0.0),))
    assert score_instances(unspecified.semantic_map, colour, unspecified)[0]["colour_ok"] is None


def test_score_instances_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match="do not match"):
        score_instances(np.zeros((32, 32)), np.zeros((32, 32)), _layout())


def test_confusion_and_miou_against_hand_computation():
    pred = np.array([[0, 0, 1], [1, 2, 2]])
    target = np.array([[0, 1, 1], [1, 2, 0]])
    # rows = target, columns = prediction; class 3 appears nowhere
    expected = np.array([[1, 0, 1, 0], [1, 2, 0, 0], [0, 0, 1, 0], [0, 0, 0, 0]])
    conf = confusion_matrix(pred, target, 4)
    assert conf.dtype == np.int64 and np.array_equal(conf, expected)
    assert np.array_equal(confusion_matrix(pred[:1], target[:1], 4)
                          + confusion_matrix(pred[1:], target[1:], 4), conf)
    miou, per_class = miou_from_confusion(conf)
    # class 0: TP 1, union 2 + 2 - 1; class 1: TP 2, union 2 + 3 - 2; class 2: TP 1, union 2 + 1 - 1
    assert np.allclose(per_class[:3], [1 / 3, 2 / 3, 1 / 2]) and np.isnan(per_class[3])
    assert miou == pytest.approx((1 / 3 + 2 / 3 + 1 / 2) / 3)
    assert miou_from_confusion(conf, ignore_absent=False)[0] == pytest.approx((1 / 3 + 2 / 3 + 1 / 2) / 4)


def test_missing_or_corrupt_files_are_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="config.json"):
        load_checker(tmp_path)
    save_checker(ShapesChecker(widths=(4, 8)), tmp_path)
    weights = tmp_path / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    with pytest.raises(ValueError, match=str(weights)):
        load_checker(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({"widths": [4, 8], "depth": 3}))
    with pytest.raises(ValueError, match="config.json"):
        load_checker(tmp_path)


def test_label_map_is_argmax_over_channels_with_first_maximum_on_ties():
    import torch

    from augment.image.checker import label_map

    logits = torch.randn(3, 7, 9, 11, generator=torch.Generator().manual_seed(0))
    logits[:, 2:5, :4] = 10.0  # a three-way tie above every other channel: the first maximum (channel 2) wins
    expected = logits.argmax(1)
    assert torch.equal(label_map(logits), expected)
    assert (expected[:, :4] == 2).all()
