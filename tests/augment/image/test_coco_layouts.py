"""Layouts borrowed from a COCO file: deterministic, exact masks, contiguous ids, rebalancing."""

from __future__ import annotations

import numpy as np
import pytest
from pydantic import ValidationError

from augment.image.coco_layouts import decode_segmentation, fit_mask, load_coco_source
from augment.config.image import CocoLayoutSpec, GligenSpec, ImageJob, ShapesLayoutSpec
from augment.image.layout_types import Layout, MaskInstance
from augment.image.layouts import layout_categories, sample_layout


def spec_for(coco_file, **kw) -> LayoutSpec:
    return CocoLayoutSpec(coco_file=str(coco_file), height=32, width=48, **kw)


def test_categories_are_the_file_s_in_id_order_mapped_to_1_to_k(coco_file):
    assert layout_categories(spec_for(coco_file)) == ["person", "car", "dog"]
    assert layout_categories(spec_for(coco_file, coco_classes=["dog", "person"])) == ["person", "dog"]
    layout = sample_layout(spec_for(coco_file, coco_classes=["dog"]), 0, 0)
    assert {(i.category, i.category_id) for i in layout.instances} == {("dog", 1)}


def test_same_seed_same_layout_and_json_round_trip(coco_file):
    spec = spec_for(coco_file)
    layouts = [sample_layout(spec, 3, i) for i in range(12)]
    assert layouts == [sample_layout(spec, 3, i) for i in range(12)]
    assert {layout.extra["coco_image_id"] for layout in layouts} == {10, 20}  # 30: crowd only
    for layout in layouts:
        again = Layout.from_json(layout.to_json())
        assert again == layout and np.array_equal(again.instance_map, layout.instance_map)
        assert all(isinstance(i, MaskInstance) for i in again.instances)
        assert again.semantic_map.max() <= 3


def test_masks_are_the_annotations_fitted_to_the_job_size(coco_file):
    spec = spec_for(coco_file, coco_fit="stretch", objects_per_image=(3, 3))
    layout = sample_layout(spec, 0, 0)  # only image 10 holds three objects
    assert [i.category for i in layout.instances] == ["person", "car", "dog"]  # largest first
    expected = fit_mask(decode_segmentation([[5, 5, 25, 5, 25, 35, 5, 35]], 40, 60), 32, 48,
                        "stretch")
    assert np.array_equal(layout.instances[0].mask(32, 48), expected)
    assert [i.source_id for i in layout.instances] == [1, 3, 2]
    assert layout.caption == "a person, a car and a dog"


def test_fit_crop_keeps_the_centre_and_stretch_keeps_everything():
    mask = np.zeros((4, 8), dtype=bool)
    mask[:, :4] = True
    assert fit_mask(mask, 4, 4, "crop").tolist() == [[True, True, False, False]] * 4
    assert fit_mask(mask, 2, 2, "stretch").tolist() == [[True, False]] * 2


def test_repeat_factor_sampling_favours_images_with_rare_classes(coco_file):
    # person and car are in 1 of the 2 drawable images, dog in both: with t = 1,
    # r(person) = r(car) = sqrt(2), r(dog) = 1, so image 10 weighs sqrt(2) and image 20 one.
    spec = spec_for(coco_file, coco_repeat_threshold=1.0)
    share = np.sqrt(2) / (1 + np.sqrt(2))
    np.testing.assert_allclose(load_coco_source(spec).weights, [share, 1 - share])
    np.testing.assert_allclose(load_coco_source(spec_for(coco_file)).weights, [0.5, 0.5])
    drawn = [sample_layout(spec, 1, i).extra["coco_image_id"] for i in range(400)]
    assert abs(drawn.count(10) / 400 - share) < 4 * np.sqrt(share * (1 - share) / 400)


def test_bad_coco_settings_name_the_field(coco_file, tmp_path):
    with pytest.raises(FileNotFoundError, match="layout.coco_file"):
        layout_categories(spec_for(tmp_path / "missing.json"))
    with pytest.raises(ValueError, match=r"layout.coco_classes: \['cat'\]"):
        layout_categories(spec_for(coco_file, coco_classes=["cat"]))
    with pytest.raises(ValueError, match="no image .* at least 4"):
        layout_categories(spec_for(coco_file, objects_per_image=(4, 5)))
    with pytest.raises(ValidationError, match="coco_classes\n  Extra inputs"):
        ShapesLayoutSpec(coco_classes=["dog"])
    with pytest.raises(ValidationError, match="class_frequencies\n  Extra inputs"):
        spec_for(coco_file, class_frequencies={"circle": 1.0})
    with pytest.raises(ValidationError, match="backend 'shapes-tiny' renders only"):
        ImageJob(layout=spec_for(coco_file))
    with pytest.raises(ValidationError, match="verify.method: the shapes checker"):
        ImageJob(model=GligenSpec(path="x/y"), layout=spec_for(coco_file),
                 verify={"method": "checker"})
