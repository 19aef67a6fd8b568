"""The shapes-features extractor: embedded weights on unseen real scenes, the torch-fidelity contract
(registration, one calculate_metrics call, the same features as extract()), invariances, bad files."""

from __future__ import annotations

import json
import math
import re
import shutil

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import torch_fidelity
from torch.utils.data import Dataset
from torch_fidelity.metric_fid import fid_features_to_statistics, fid_statistics_to_metric
from torch_fidelity.metric_isc import isc_features_to_metric
from torch_fidelity.metric_kid import kid_features_to_metric
from torch_fidelity.metric_prc import prc_features_to_metric
from torch_fidelity.registry import FEATURE_EXTRACTORS_REGISTRY
from torch_fidelity.utils import create_feature_extractor, get_featuresdict_from_dataset

from augment.image.layout_types import Instance, Layout

from augment.image.layouts import render_scene, sample_layout
from augment.image.world import BACKGROUNDS, CLASSES, COLOURS
from augment.image.training.scenes import render_scenes, world_layout_spec
from evaluation.image.shapes_features import (CLASS_NAMES, EMBEDDED_SHAPES_FEATURES, EXTRACTOR_NAME,
                                                   ShapesFeatureExtractor, class_index, extract,
                                                   load_shapes_features, register, weights_sha256)
from evaluation.image.training.shapes_features import scene_targets

UNSEEN_SEED = 9_876  # neither the training seed (0) nor the held-out one (1)
WORLD = world_layout_spec(64, skewed=False)
FIDELITY_KWARGS = dict(  # what one calculate_metrics call on small in-memory sets needs, offline on CPU
    feature_extractor=EXTRACTOR_NAME, feature_layer_isc="logits_unbiased", feature_layer_fid="features",
    feature_layer_kid="features", feature_layer_prc="features", isc=True, fid=True, kid=True, prc=True,
    cuda=False, batch_size=32, isc_splits=2, kid_subset_size=32, save_cpu_ram=True, cache=False,
    verbose=False)


class Images(Dataset):
    """uint8 (3, H, W) tensors, as torch-fidelity wants them."""

    def __init__(self, images: torch.Tensor):
        self.images = images

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> torch.Tensor:
        return self.images[i]


@pytest.fixture(scope="module")
def model():
    return load_shapes_features()


@pytest.fixture(scope="module")
def unseen():
    """128 real scenes of an unseen seed: (SceneArrays, uint8 images (128, 3, 64, 64))."""
    scenes = render_scenes(WORLD, UNSEEN_SEED, 0, 128)
    return scenes, torch.from_numpy(scenes.images)


@pytest.fixture(scope="module")
def unseen_features(model, unseen):
    return extract(model, unseen[1], batch_size=FIDELITY_KWARGS["batch_size"])


@pytest.fixture(scope="module")
def two_sets(unseen):
    """Two sets of 64 real scenes from different seeds."""
    other = torch.from_numpy(render_scenes(WORLD, UNSEEN_SEED + 1, 0, 64).images)
    return unseen[1][:64], other


@pytest.fixture(scope="module")
def metrics(two_sets):
    register()
    return torch_fidelity.calculate_metrics(input1=Images(two_sets[0]), input2=Images(two_sets[1]),
                                            **FIDELITY_KWARGS)


def test_scene_targets_agree_with_the_layouts(unseen):
    scenes, _ = unseen
    targets = scene_targets(scenes)
    for i in range(24):
        layout = sample_layout(WORLD, UNSEEN_SEED, i)
        areas = [int(m.sum()) for m in layout.visible_masks()]
        inst = layout.instances[int(np.argmax(areas))]
        assert CLASS_NAMES[targets["largest"][i]] == f"{inst.colour} {inst.category}"
        assert targets["count"][i] == sum(a > 0 for a in areas) - 1
        assert BACKGROUNDS[targets["background"][i]] == layout.background


def test_embedded_extractor_classifies_unseen_real_scenes(unseen, unseen_features):
    predicted = unseen_features["logits_unbiased"].argmax(1).numpy()
    assert (predicted == scene_targets(unseen[0])["largest"]).mean() >= 0.9


def test_features_see_the_background(model, unseen, unseen_features):
    scenes, _ = unseen
    background = extract(model, unseen[1], outputs=("background_logits",))
    predicted = background["background_logits"].argmax(1).numpy()
    assert (predicted == scene_targets(scenes)["background"]).mean() >= 0.75  # chance: 0.25
    # the same layouts on another background move the features: FID to the real scenes grows
    layouts = [sample_layout(WORLD, UNSEEN_SEED, i) for i in range(128)]
    swapped = {name: np.stack([render_scene(Layout(l.height, l.width, name, l.instances, l.texture_seed))
                               .transpose(2, 0, 1) for l in layouts]) for name in ("plain", "stripes")}
    other_real = extract(model, torch.from_numpy(render_scenes(WORLD, UNSEEN_SEED + 2, 0, 128).images))

    def fid(a, b):
        stats = [fid_features_to_statistics(x.double()) for x in (a, b)]
        return fid_statistics_to_metric(*stats, verbose=False)["frechet_inception_distance"]

    real_vs_real = fid(other_real["features"], unseen_features["features"])
    for name, images in swapped.items():
        assert fid(extract(model, images)["features"], unseen_features["features"]) > 2 * real_vs_real, name


def test_single_class_set_scores_lower_inception_score_than_a_balanced_set(model):
    def image(shape: str, colour: str, i: int) -> np.ndarray:
        rng = np.random.default_rng(i)
        inst = Instance(shape, colour, cx=float(rng.uniform(20, 44)), cy=float(rng.uniform(20, 44)),
                        radius=float(rng.uniform(9, 13)), rotation=float(rng.uniform(0, 6.3)))
        layout = Layout(64, 64, BACKGROUNDS[i % len(BACKGROUNDS)], (inst,), texture_seed=i)
        return render_scene(layout).transpose(2, 0, 1)

    pairs = [(shape, colour) for shape in CLASSES for colour in COLOURS]
    balanced = extract(model, np.stack([image(s, c, i) for i, (s, c) in enumerate(pairs)]))
    one_class = extract(model, np.stack([image("circle", "red", i) for i in range(len(pairs))]))
    truth = torch.tensor([class_index(*pair) for pair in pairs])
    assert (balanced["logits_unbiased"].argmax(1) == truth).float().mean() >= 0.9
    score = {name: isc_features_to_metric(f["logits_unbiased"], splits=1, shuffle=False)
             ["inception_score_mean"] for name, f in (("balanced", balanced), ("one_class", one_class))}
    assert score["one_class"] < 1.5 < 15 < score["balanced"]


def test_register_is_idempotent_and_refuses_a_different_extractor(monkeypatch):
    register()
    register()
    assert FEATURE_EXTRACTORS_REGISTRY[EXTRACTOR_NAME] is ShapesFeatureExtractor
    monkeypatch.setitem(FEATURE_EXTRACTORS_REGISTRY, EXTRACTOR_NAME, object)
    with pytest.raises(ValueError, match=EXTRACTOR_NAME):
        register()


def test_one_calculate_metrics_call_gives_every_metric(metrics):
    for key in ("inception_score_mean", "frechet_inception_distance", "kernel_inception_distance_mean",
                "precision", "recall"):
        assert math.isfinite(metrics[key]), key
    assert metrics["frechet_inception_distance"] > 0
    assert 1.0 <= metrics["inception_score_mean"] <= len(CLASS_NAMES)


def test_extract_gives_torch_fidelitys_features_and_metrics(model, two_sets, unseen_features, metrics):
    register()
    extractor = create_feature_extractor(EXTRACTOR_NAME, ["features", "logits_unbiased"], cuda=False)
    # two_sets[0] is the first 64 unseen scenes, already extracted in batches of 32
    ours = [{name: f[:64] for name, f in unseen_features.items()},
            extract(model, two_sets[1], batch_size=FIDELITY_KWARGS["batch_size"])]
    theirs = get_featuresdict_from_dataset(Images(two_sets[0]), extractor, FIDELITY_KWARGS["batch_size"],
                                           cuda=False, save_cpu_ram=True, verbose=False)
    for name in ("features", "logits_unbiased"):
        assert ours[0][name].dtype == torch.float32 and torch.equal(ours[0][name], theirs[name])
    # the evaluation path: cached extract() features through torch-fidelity's feature-level functions
    a, b = (f["features"] for f in ours)
    from_features = {
        **isc_features_to_metric(ours[0]["logits_unbiased"], FIDELITY_KWARGS["isc_splits"]),
        **fid_statistics_to_metric(fid_features_to_statistics(a), fid_features_to_statistics(b), False),
        **kid_features_to_metric(a, b, **FIDELITY_KWARGS),
        **prc_features_to_metric(a, b, **FIDELITY_KWARGS),
    }
    for key, value in from_features.items():
        assert metrics[key] == pytest.approx(value, rel=1e-9, abs=1e-12), key


def test_identical_sets_give_zero_fid_and_full_precision_recall(two_sets):
    register()
    same = Images(two_sets[0][:32])
    out = torch_fidelity.calculate_metrics(input1=same, input2=same,
                                           **{**FIDELITY_KWARGS, "isc": False, "kid": False})
    assert abs(out["frechet_inception_distance"]) < 1e-3
    assert out["precision"] == out["recall"] == 1.0


def test_extract_is_batch_size_independent_and_accepts_any_size(model, unseen):
    images = unseen[1][:12]
    one, many = extract(model, images, batch_size=1), extract(model, images, batch_size=12)
    for name in ("features", "logits_unbiased"):
        assert one[name].shape[0] == 12
        torch.testing.assert_close(one[name], many[name], atol=1e-5, rtol=1e-5)  # logits reach ~180
    upsampled = F.interpolate(images, scale_factor=2.0, mode="nearest")  # (12, 3, 128, 128) uint8
    agree = extract(model, upsampled)["logits_unbiased"].argmax(1) == many["logits_unbiased"].argmax(1)
    assert agree.float().mean() >= 0.9
    with pytest.raises(ValueError, match="uint8"):
        extract(model, images.float())


def test_missing_or_corrupt_weights_name_the_file(tmp_path):
    shutil.copy(EMBEDDED_SHAPES_FEATURES / "config.json", tmp_path / "config.json")
    weights = tmp_path / "model.safetensors"
    with pytest.raises(FileNotFoundError, match=re.escape(str(weights))):
        load_shapes_features(tmp_path)
    with pytest.raises(FileNotFoundError, match=re.escape(str(weights))):
        weights_sha256(tmp_path)
    weights.write_bytes(b"not a safetensors file")
    with pytest.raises(ValueError, match=re.escape(str(weights))):
        load_shapes_features(tmp_path)
    register()
    with pytest.raises(ValueError, match=re.escape(str(weights))):
        create_feature_extractor(EXTRACTOR_NAME, ["features"], cuda=False,
                                 feature_extractor_weights_path=str(weights))
