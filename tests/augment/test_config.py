"""Generation config models: bad input names the field and the allowed values; unknown keys are
errors; a backend's settings are its own."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from augment.config.base import ConfigError, load_config, validate
from augment.config.image import (CocoLayoutSpec, ControlNetSegSpec, GligenSpec, ImageJob,
                                  ImageSamplerSpec, ShapesLayoutSpec, ShapesTinySpec, VerifySpec)
from augment.core.schedulers import SCHEDULERS


def write(tmp_path, text):
    path = tmp_path / "job.yaml"
    path.write_text(text)
    return path


def test_unknown_key_is_an_error_naming_the_field_and_the_file(tmp_path):
    path = write(tmp_path, "sampler:\n  stepz: 10\n")
    with pytest.raises(ConfigError) as info:
        load_config(path, ImageJob)
    message = str(info.value)
    assert f"{path}: sampler.stepz: unknown key" in message


def test_bad_value_names_the_field_and_the_allowed_values(tmp_path):
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, "sampler:\n  scheduler: heun\n"), ImageJob)
    assert "sampler.scheduler" in str(info.value)
    assert all(f"'{name}'" in str(info.value) for name in SCHEDULERS)


def test_out_of_range_number_is_rejected(tmp_path):
    with pytest.raises(ConfigError, match=r"sampler\.steps"):
        load_config(write(tmp_path, "sampler:\n  steps: 0\n"), ImageJob)


def test_missing_and_malformed_files_name_the_file(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.yaml", ImageJob)
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(write(tmp_path, "sampler: [unclosed\n"), ImageJob)
    with pytest.raises(ConfigError, match="mapping"):
        load_config(write(tmp_path, "- a list\n"), ImageJob)


@pytest.mark.parametrize("name", ["../escape", "a/b", "/abs", "..", ""])
def test_dataset_name_cannot_leave_the_output_folder(name):
    with pytest.raises(ValidationError, match="name"):
        ImageJob(name=name)


def test_layout_rejects_unknown_classes_and_inconsistent_ranges():
    with pytest.raises(ValidationError, match="unknown class"):
        ShapesLayoutSpec(classes=["circle", "hexagon"])
    with pytest.raises(ValidationError, match="class_frequencies"):
        ShapesLayoutSpec(classes=["circle"], class_frequencies={"square": 1.0})
    with pytest.raises(ValidationError, match="objects_per_image"):
        ShapesLayoutSpec(objects_per_image=(3, 2))
    with pytest.raises(ValidationError, match="size_range"):
        ShapesLayoutSpec(size_range=(0.5, 0.2))
    with pytest.raises(ValidationError, match="colour_bias"):
        ShapesLayoutSpec(colour_bias={"circle": {"red": 0.8, "blue": 0.5}})


def test_layout_source_follows_the_settings_and_keeps_shapes_and_coco_apart():
    job = ImageJob.model_validate({"layout": {"height": 32, "width": 32}})
    assert isinstance(job.layout, ShapesLayoutSpec)
    sd = {"backend": "gligen", "path": "a/b"}
    borrowed = ImageJob.model_validate({"model": sd, "verify": {"method": "none"},
                                        "layout": {"coco_file": "x.json"}})
    assert isinstance(borrowed.layout, CocoLayoutSpec) and borrowed.layout.source == "coco"
    with pytest.raises(ConfigError, match=r"layout.colour_unspecified: unknown key"):
        validate(ImageJob, {"model": sd, "verify": {"method": "none"},
                            "layout": {"coco_file": "x.json", "colour_unspecified": 0.5}}, "job")
    with pytest.raises(ConfigError, match=r"layout: unknown layout source 'lvis'"):
        validate(ImageJob, {"layout": {"source": "lvis"}}, "job")
    with pytest.raises(ConfigError, match="backend 'shapes-tiny' renders only"):
        validate(ImageJob, {"layout": {"coco_file": "x.json"}}, "job")


def test_class_probabilities_normalise_targets():
    spec = ShapesLayoutSpec(classes=["circle", "square", "star"],
                            class_frequencies={"circle": 3, "square": 1})
    assert spec.class_probabilities() == {"circle": 0.75, "square": 0.25, "star": 0.0}


def test_assignment_is_validated_too():
    spec = ImageSamplerSpec()
    with pytest.raises(ValidationError):
        spec.steps = -1


def test_real_backends_need_their_weights_and_refuse_foreign_options():
    with pytest.raises(ValidationError, match="path\n  Field required"):
        GligenSpec()
    with pytest.raises(ValidationError, match="controlnet\n  Field required"):
        ControlNetSegSpec(path="a/b")
    with pytest.raises(ValidationError, match="controlnet\n  Extra inputs"):
        GligenSpec(path="a/b", controlnet="c/d")
    with pytest.raises(ValidationError, match="palette\n  Extra inputs"):
        GligenSpec(path="a/b", palette={"circle": "ball"})
    with pytest.raises(ValidationError, match="compile_unet\n  Extra inputs"):
        ShapesTinySpec(compile_unet=True)
    with pytest.raises(ValidationError, match="cpu_offload: needs a GPU"):
        GligenSpec(path="a/b", cpu_offload=True)
    with pytest.raises(ValidationError, match="'hexagon' is not an ADE20K class"):
        ControlNetSegSpec(path="a/b", controlnet="c/d", palette={"circle": "hexagon"})
    with pytest.raises(ValidationError, match="0..255"):
        ControlNetSegSpec(path="a/b", controlnet="c/d", palette={"circle": (0, 300, 0)})
    spec = ControlNetSegSpec(path="a/b", controlnet="c/d", device="cuda", cpu_offload=True,
                             compile_unet=True, palette={"circle": [1, 2, 3]})
    assert spec.palette == {"circle": (1, 2, 3)}


def test_prompt_template_placeholders_are_checked():
    assert ImageSamplerSpec(prompt_template="a photo of {caption}, {classes}").prompt_template
    with pytest.raises(ValidationError, match=r"(?s)prompt_template.*unknown placeholders \['colour'\]"):
        ImageSamplerSpec(prompt_template="{colour} thing")
    with pytest.raises(ValidationError, match="prompt_template"):
        ImageSamplerSpec(prompt_template="{caption")


def test_verification_method_follows_the_backend_and_clip_needs_local_weights(tmp_path):
    real = {"backend": "gligen", "path": "a/b"}
    assert VerifySpec().resolved_method("shapes-tiny") == "checker"
    assert VerifySpec(clip_checkpoint="w.safetensors").resolved_method("gligen") == "clip"
    assert VerifySpec(enabled=False, method="clip").resolved_method("gligen") == "none"
    with pytest.raises(ValidationError, match="verify.clip_checkpoint: verification of backend"):
        ImageJob.model_validate({"model": real})
    assert ImageJob.model_validate({"model": real, "verify": {"method": "none"}}).verify.method == "none"
    with pytest.raises(ValidationError, match="layout.background_images: backend 'shapes-tiny'"):
        ImageJob(layout={"background_images": str(tmp_path)})


def test_a_job_round_trips_through_its_json_with_its_backends_own_settings():
    job = ImageJob.model_validate({"model": {"backend": "controlnet-seg", "path": "a/b",
                                             "controlnet": "c/d", "palette": {"circle": "car"}},
                                   "verify": {"method": "none"}})
    dumped = job.model_dump(mode="json")
    assert dumped["model"]["palette"] == {"circle": "car"}
    assert ImageJob.model_validate(dumped) == job
