"""CLIP models and alignment: the embedded shapes CLIP on unseen real scenes, loading a user's
open_clip checkpoint, preprocessing in tensor form, and the metrics against direct computations."""

from __future__ import annotations

import json

import numpy as np
import open_clip
import pytest
import torch
from PIL import Image
from safetensors.torch import save_file
from scipy.special import softmax
from scipy.stats import binomtest

from augment.image.layouts import sample_layout
from augment.image.world import CLASSES, COLOURS
from augment.image.training.scenes import render_scenes, world_layout_spec
from augment.image.clip import (COLOUR_TEMPLATE, EMBEDDED_NAME, TEMPLATE, classify_crops,
                                crop_boxes, crop_images, encode_images, encode_texts, input_size,
                                load_clip, model_input, weights_sha256, zero_shot)
from evaluation.image.clip_alignment import clip_score, clip_score_100

UNSEEN_SEED = 9_876  # neither the training seed (0) nor the held-out one (1)


@pytest.fixture(scope="module")
def embedded():
    return load_clip()


@pytest.fixture(scope="module")
def unseen_scenes():
    world = world_layout_spec(64, skewed=False)
    scenes = render_scenes(world, UNSEEN_SEED, 0, 64)
    captions = [sample_layout(world, UNSEEN_SEED, i).caption for i in range(64)]
    return scenes, captions


def test_embedded_model_loads_with_its_tokenizer(embedded):
    model, preprocess, tokenizer = embedded
    assert EMBEDDED_NAME in open_clip.list_models()
    assert input_size(model) == 64 and not model.training
    assert tokenizer(["a photo of a star"]).shape == (1, 32)
    assert len(weights_sha256()) == 64


def test_matching_captions_beat_shuffled_captions_on_unseen_scenes(embedded, unseen_scenes):
    model, _, tokenizer = embedded
    scenes, captions = unseen_scenes
    image_features = encode_images(model, torch.from_numpy(scenes.images))
    text_features = encode_texts(model, tokenizer, captions)
    other = np.roll(np.arange(len(captions)), 1)  # pair scene i with the caption of scene i-1
    distinct = np.array([captions[i] != captions[j] for i, j in enumerate(other)])
    matched = clip_score(image_features, text_features)[distinct]
    shuffled = clip_score(image_features, text_features[other])[distinct]
    wins = int((matched > shuffled).sum())
    assert binomtest(wins, len(matched), 0.5, alternative="greater").pvalue < 1e-6  # paired sign test
    assert matched.mean() > shuffled.mean()


def test_zero_shot_shape_and_colour_of_unseen_crops_well_above_chance(embedded, unseen_scenes):
    model, _, tokenizer = embedded
    scenes, _ = unseen_scenes
    boxes = [crop_boxes(scenes.instance[i], num_instances=int((scenes.classes[i] > 0).sum()))
             for i in range(len(scenes))]
    shape_true = np.concatenate([scenes.classes[i, :len(b)] for i, b in enumerate(boxes)]) - 1
    colour_true = np.concatenate([scenes.colours[i, :len(b)] for i, b in enumerate(boxes)]) - 1
    images = scenes.images.transpose(0, 2, 3, 1).copy()  # numpy (B, H, W, 3) uint8 input
    shape_probs, shape_pred = classify_crops(model, tokenizer, images, boxes, list(CLASSES), TEMPLATE)
    _, colour_pred = classify_crops(model, tokenizer, images, boxes, list(COLOURS), COLOUR_TEMPLATE)
    assert shape_probs.shape == (len(shape_true), len(CLASSES))
    np.testing.assert_allclose(shape_probs.sum(1), 1.0)
    assert (shape_pred == shape_true).mean() >= 0.7  # chance: 0.2
    assert (colour_pred == colour_true).mean() >= 0.8  # chance: 0.17


def test_encode_images_is_batch_size_independent_and_normalised(embedded, unseen_scenes):
    model, _, _ = embedded
    images = torch.from_numpy(unseen_scenes[0].images[:6])
    one_by_one = encode_images(model, images, batch_size=1)
    together = encode_images(model, images, batch_size=6)
    from_numpy = encode_images(model, images.permute(0, 2, 3, 1).numpy())
    assert together.shape == (6, 128) and together.dtype == np.float32
    np.testing.assert_allclose(one_by_one, together, atol=1e-5)
    np.testing.assert_allclose(from_numpy, together, atol=1e-6)  # same pixels, another memory layout
    np.testing.assert_allclose(np.linalg.norm(together, axis=1), 1.0, atol=1e-5)


def test_model_input_matches_open_clip_preprocess(embedded):
    model, preprocess, _ = embedded
    rng = np.random.default_rng(0)
    native = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
    ours = model_input(model, torch.from_numpy(native).permute(2, 0, 1)[None])[0]
    torch.testing.assert_close(ours, preprocess(Image.fromarray(native)), atol=1e-5, rtol=0)
    # a larger, non-square image: shorter side resized, centre crop; kernels differ slightly
    smooth = np.array(Image.fromarray(native).resize((160, 128), Image.BILINEAR))
    ours = model_input(model, torch.from_numpy(smooth).permute(2, 0, 1)[None])[0]
    theirs = preprocess(Image.fromarray(smooth))
    assert ours.shape == theirs.shape == (3, 64, 64)
    assert (ours - theirs).abs().mean() < 0.03


def test_clip_scores_and_zero_shot_match_direct_computation():
    rng = np.random.default_rng(1)
    image, text = rng.normal(size=(50, 8)), rng.normal(size=(50, 8))
    cos = np.array([a @ b / np.sqrt((a @ a) * (b @ b)) for a, b in zip(image, text)])
    assert (cos < 0).any()  # the clipping at 0 is exercised
    np.testing.assert_allclose(clip_score(image, text), 2.5 * np.clip(cos, 0, None), rtol=1e-12)
    np.testing.assert_allclose(clip_score(image, text, w=1.0), np.clip(cos, 0, None), rtol=1e-12)
    np.testing.assert_allclose(clip_score_100(image, text), 100 * cos, rtol=1e-12)
    unit = lambda x: x / np.linalg.norm(x, axis=1, keepdims=True)  # noqa: E731
    probs = zero_shot(unit(image), unit(text[:5]), 30.0)
    np.testing.assert_allclose(probs, softmax(30.0 * unit(image) @ unit(text[:5]).T, axis=1), rtol=1e-12)
    with pytest.raises(ValueError, match="one shape"):
        clip_score(image, text[:10])


def test_crop_boxes_are_squares_kept_inside_the_image():
    instance_map = np.zeros((64, 64), np.uint8)
    instance_map[10:20, 30:50] = 1  # 20 wide, 10 high
    instance_map[0:8, 0:4] = 3  # at the corner; instance 2 has no visible pixel
    boxes = crop_boxes(instance_map, margin=0.25)
    np.testing.assert_allclose(boxes[0], [25, 0, 55, 30])  # side 20 * 1.5, shifted down to y = 0
    assert np.isnan(boxes[1]).all()
    np.testing.assert_allclose(boxes[2], [0, 0, 12, 12])
    np.testing.assert_allclose(crop_boxes(boxes=[[30, 10, 50, 20]], image_size=(64, 64), margin=0.25),
                               boxes[:1])
    with pytest.raises(ValueError, match="NaN"):
        crop_images(np.zeros((1, 64, 64, 3), np.uint8), [boxes], 32)


def test_crop_images_at_native_scale_slices_and_when_shrinking_averages():
    image = np.random.default_rng(2).integers(0, 256, (1, 32, 32, 3), dtype=np.uint8)
    as_float = torch.from_numpy(image).permute(0, 3, 1, 2).float() / 255.0
    native = crop_images(image, [np.array([[4, 8, 12, 16]])], 8)
    torch.testing.assert_close(native[0], as_float[0, :, 8:16, 4:12])
    halved = crop_images(image, [np.array([[0, 0, 32, 32]])], 16)
    torch.testing.assert_close(halved, torch.nn.functional.avg_pool2d(as_float, 2))


@pytest.fixture(scope="module")
def tiny_config(tmp_path_factory):
    """A tiny random open_clip architecture registered under a test-only name."""
    name = "synthmill-test-clip"
    config = {"embed_dim": 16,
              "vision_cfg": {"image_size": 32, "patch_size": 8, "width": 32, "head_width": 16, "layers": 1},
              "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 16, "heads": 2, "layers": 1}}
    path = tmp_path_factory.mktemp("configs") / f"{name}.json"
    path.write_text(json.dumps(config))
    open_clip.add_model_config(path)
    return name


def test_user_checkpoint_loads_through_load_clip(tiny_config, tmp_path):
    torch.manual_seed(0)
    reference = open_clip.create_model(tiny_config).eval()
    checkpoint = tmp_path / "open_clip_model.safetensors"
    save_file({k: v.contiguous() for k, v in reference.state_dict().items()}, checkpoint)
    model, _, tokenizer = load_clip(tiny_config, checkpoint)
    images = torch.randint(0, 256, (3, 3, 32, 32), dtype=torch.uint8)
    expected = reference.encode_image(model_input(reference, images), normalize=True)
    np.testing.assert_allclose(encode_images(model, images), expected.detach().numpy(), atol=1e-6)
    assert encode_texts(model, tokenizer, ["a red circle", "a star"]).shape == (2, 16)
    assert weights_sha256(tiny_config, checkpoint) != weights_sha256()


def test_unusable_checkpoints_are_named(tiny_config, tmp_path):
    missing = tmp_path / "nowhere" / "open_clip_model.safetensors"
    with pytest.raises(FileNotFoundError, match=r"nowhere/open_clip_model\.safetensors.*checkpoint="):
        load_clip("ViT-B-32", missing)
    with pytest.raises(ValueError, match="no embedded weights.*ViT-B-32"):
        load_clip("ViT-B-32")
    pickle_file = tmp_path / "model.pt"
    pickle_file.write_bytes(b"not read")
    with pytest.raises(ValueError, match=r"model\.pt: only \.safetensors"):
        load_clip("ViT-B-32", pickle_file)
    corrupt = tmp_path / "corrupt.safetensors"
    corrupt.write_bytes(b"\x00" * 16)
    with pytest.raises(ValueError, match=r"corrupt\.safetensors: not valid weights"):
        load_clip(tiny_config, corrupt)
