"""End-to-end evaluation on real procedural scenes, where the right answers are known."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from PIL import Image, ImageFilter

from augment.config import ShapesLayoutSpec
from evaluation.config import EvalSpec
from augment.image.layouts import render_scene, sample_layout
from evaluation import features as features_mod
from evaluation.evaluate import evaluate_dataset
from evaluation.figures import COLUMNS
from evaluation.reference import reference_from_set, save_reference
from evaluation.image.extractors import fidelity_extractor

N = 80


def write_scenes(folder, seed, n=N, spec=None, transform=None):
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        image = Image.fromarray(render_scene(sample_layout(spec or ShapesLayoutSpec(), seed, i)))
        if transform:
            image = transform(image)
        image.save(folder / f"{i:04d}.png")
    return folder


@pytest.fixture(scope="module")
def scenes(tmp_path_factory):
    root = tmp_path_factory.mktemp("scenes")
    out = {"ref": write_scenes(root / "ref", 1), "real": write_scenes(root / "real", 2)}
    for radius in (2, 4, 8):  # the extractor is trained to shrug off blur up to sigma 1
        out[f"blur{radius}"] = write_scenes(root / f"blur{radius}", 2, transform=lambda im, r=radius:
                                            im.filter(ImageFilter.GaussianBlur(r)))
    noise = root / "noise"
    noise.mkdir()
    rng = np.random.default_rng(0)
    for i in range(N):
        Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(noise / f"{i}.png")
    out["noise"] = noise
    return out


def spec_for(tmp_path, **kw):
    base = dict(cache_dir=str(tmp_path / "cache"), metrics=["fid", "kid", "is", "prc"],
                bootstrap_rounds=20, kid_subset_size=50, kid_subsets=20)
    base.update(kw)
    return EvalSpec(**base)


def value(table, metric, group="all"):
    row = table[(table.metric == metric) & (table.group == group)]
    assert len(row) == 1, (metric, group)
    return float(row.value.iloc[0])


def test_identical_sets_score_perfectly_and_noise_scores_badly(scenes, tmp_path):
    spec = spec_for(tmp_path)
    same = evaluate_dataset(scenes["ref"], spec, scenes["ref"]).figures
    assert value(same, "fid") == pytest.approx(0, abs=1e-3)
    assert value(same, "precision") == 1.0 and value(same, "recall") == 1.0
    real = evaluate_dataset(scenes["real"], spec, scenes["ref"]).figures
    noise = evaluate_dataset(scenes["noise"], spec, scenes["ref"]).figures
    assert value(noise, "fid") > 10 * value(real, "fid")
    assert value(noise, "kid") > 10 * value(real, "kid")
    assert value(noise, "precision") < 0.5 * value(real, "precision")


def test_fid_and_kid_grow_with_blur(scenes, tmp_path):
    spec = spec_for(tmp_path)
    tables = [evaluate_dataset(scenes[k], spec, scenes["ref"]).figures
              for k in ("real", "blur2", "blur4", "blur8")]
    fids = [value(t, "fid") for t in tables]
    kids = [value(t, "kid") for t in tables]
    assert fids == sorted(fids) and kids == sorted(kids)


def test_inception_score_is_lower_for_one_class(tmp_path):
    one = write_scenes(tmp_path / "one", 3, 64, ShapesLayoutSpec(
        classes=["circle"], colours=["red"], objects_per_image=(1, 1)))
    many = write_scenes(tmp_path / "many", 3, 64)
    spec = spec_for(tmp_path, metrics=["is"])
    assert value(evaluate_dataset(one, spec).figures, "inception_score") < \
        value(evaluate_dataset(many, spec).figures, "inception_score")


def test_metrics_files_have_the_long_form_columns(scenes, tmp_path):
    result = evaluate_dataset(scenes["real"], spec_for(tmp_path), scenes["ref"], tmp_path / "rep")
    table = pd.read_csv(tmp_path / "rep" / "metrics.csv")
    assert list(table.columns) == COLUMNS
    assert (tmp_path / "rep" / "metrics.json").exists()
    fid_row = table[table.metric == "fid"].iloc[0]
    assert fid_row.n == N and fid_row.ci_low <= fid_row.value <= fid_row.ci_high
    assert "biased upward" in fid_row.details  # N < 2048 is said, not hidden
    assert len(result.figures) == len(table)


def test_second_run_hits_the_cache_and_a_changed_file_misses(scenes, tmp_path, monkeypatch):
    spec = spec_for(tmp_path, metrics=["is"])
    calls = []
    real_extract = features_mod._extract_missing

    def counting(image_set, extractors, *a, **k):
        calls.append([e.name for e in extractors])
        return real_extract(image_set, extractors, *a, **k)

    monkeypatch.setattr(features_mod, "_extract_missing", counting)
    folder = write_scenes(tmp_path / "set", 5, 16)
    first = value(evaluate_dataset(folder, spec).figures, "inception_score")
    second = value(evaluate_dataset(folder, spec).figures, "inception_score")
    assert len(calls) == 1 and first == second  # no forward pass the second time
    write_scenes(tmp_path / "other", 6, 1)
    (tmp_path / "other" / "0000.png").replace(folder / "0003.png")
    evaluate_dataset(folder, spec)
    assert len(calls) == 2


def test_unchanged_data_reuses_the_figures_and_a_changed_spec_recomputes(scenes, tmp_path, monkeypatch):
    import evaluation.evaluate as evaluate_mod

    spec = spec_for(tmp_path)
    first = evaluate_dataset(scenes["real"], spec, scenes["ref"]).figures
    computed = []
    real_all = evaluate_mod.run_metrics
    monkeypatch.setattr(evaluate_mod, "run_metrics",
                        lambda *a, **k: computed.append(1) or real_all(*a, **k))
    again = evaluate_dataset(scenes["real"], spec, scenes["ref"]).figures
    assert computed == []  # from the figures cache
    pd.testing.assert_frame_equal(first, again)
    other = evaluate_dataset(scenes["real"], spec.model_copy(update={"bootstrap_rounds": 10}),
                             scenes["ref"]).figures
    assert computed == [1] and value(other, "fid") == pytest.approx(value(first, "fid"))
    evaluate_dataset(scenes["blur2"], spec, scenes["ref"])  # other images: computed afresh
    assert computed == [1, 1]


def test_corrupt_images_are_listed_and_excluded(tmp_path):
    folder = write_scenes(tmp_path / "set", 7, 12)
    (folder / "0005.png").write_bytes(b"not a png")
    table = evaluate_dataset(folder, spec_for(tmp_path, metrics=["is"])).figures
    row = table[table.metric == "unreadable_images"].iloc[0]
    assert row.value == 1 and "0005.png" in row.details
    assert table[table.metric == "inception_score"].n.iloc[0] == 11


def test_reference_statistics_file_gives_the_same_figures(scenes, tmp_path):
    spec = spec_for(tmp_path)
    ref, _ = reference_from_set(scenes["ref"], spec, fidelity_extractor(spec))
    npz = save_reference(ref, tmp_path / "ref.npz")
    a = evaluate_dataset(scenes["real"], spec, scenes["ref"]).figures
    b = evaluate_dataset(scenes["real"], spec, npz).figures
    assert value(a, "fid") == pytest.approx(value(b, "fid"))
    assert value(a, "kid") == pytest.approx(value(b, "kid"))


def test_a_stats_file_of_another_extractor_is_refused(scenes, tmp_path):
    spec = spec_for(tmp_path)
    ref, _ = reference_from_set(scenes["ref"], spec, fidelity_extractor(spec))
    ref.weights = "0" * 16
    npz = save_reference(ref, tmp_path / "ref.npz")
    with pytest.raises(ValueError, match="recompute it"):
        evaluate_dataset(scenes["real"], spec, npz)


def test_missing_inception_weights_say_how_to_supply_them(scenes, tmp_path):
    spec = spec_for(tmp_path, extractor="inception-v3-compat")
    with pytest.raises(FileNotFoundError, match="extractor_weights"):
        evaluate_dataset(scenes["real"], spec, scenes["ref"])


def test_inception_extractor_loads_local_safetensors_and_scores(scenes, tmp_path):
    import unittest.mock

    import torch
    from safetensors.torch import save_file
    from torch_fidelity import feature_extractor_inceptionv3 as fe

    # random weights in the standard architecture, saved the way a user converts the real ones
    with unittest.mock.patch.object(fe.torch, "load", lambda *a, **k: {}), \
            unittest.mock.patch.object(fe.FeatureExtractorInceptionV3, "load_state_dict",
                                       lambda self, sd: None):
        torch.manual_seed(0)
        model = fe.FeatureExtractorInceptionV3("x", ["2048"], feature_extractor_weights_path="x")
    weights = tmp_path / "inception.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(weights))
    small = {k: write_scenes(tmp_path / k, s, 12) for k, s in (("a", 1), ("b", 2))}
    spec = spec_for(tmp_path, extractor="inception-v3-compat", extractor_weights=str(weights),
                    metrics=["fid", "kid"], kid_subset_size=10, bootstrap_rounds=2,
                    min_group_size=8)
    same = evaluate_dataset(small["a"], spec, small["a"]).figures
    other = evaluate_dataset(small["b"], spec, small["a"]).figures
    assert value(same, "fid") == pytest.approx(0, abs=1e-2)
    assert value(other, "fid") > value(same, "fid")
    assert set(same.extractor) == {"inception-v3-compat"}


def test_layout_maps_handed_over_from_shapes_features_equal_a_checker_pass(tmp_path):
    import torch

    from augment.image.checker import load_checker, predict
    from augment.image.training.scenes import render_scenes, world_layout_spec
    from evaluation.image.extractors import CheckerMaps, checker_extractor, fidelity_extractor

    images = torch.from_numpy(render_scenes(world_layout_spec(64, skewed=False), 3, 0, 20).images)
    spec = spec_for(tmp_path, batch_size=8)
    maps = CheckerMaps()
    fid_ext, checker = fidelity_extractor(spec, maps), checker_extractor(spec, maps)
    rows = np.arange(len(images))
    fid_ext(images, rows)
    assert len(maps.maps) == 3  # batches of 8, 8, 4
    handed = checker(images, rows)
    assert len(maps.maps) == 0  # every batch taken from the hand-over
    semantic, colour = predict(load_checker(), images)
    np.testing.assert_array_equal(handed["semantic"], semantic.numpy())
    np.testing.assert_array_equal(handed["colour"], colour.numpy())
    other = images.flip(-1)  # batches never seen by shapes-features are computed as usual
    np.testing.assert_array_equal(checker(other, rows)["semantic"], predict(load_checker(), other)[0].numpy())
