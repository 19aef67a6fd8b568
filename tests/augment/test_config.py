"""Config models: bad input names the field and the allowed values; unknown keys are errors."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from augment.config import ConfigError, ImageJob, LayoutSpec, RunConfig, SamplerSpec, load_config


def write(tmp_path, text):
    path = tmp_path / "run.yaml"
    path.write_text(text)
    return path


def test_unknown_key_is_an_error_naming_the_field(tmp_path):
    path = write(tmp_path, "image:\n  sampler:\n    stepz: 10\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    message = str(info.value)
    assert "image.sampler.stepz" in message and "unknown key" in message and str(path) in message


def test_bad_value_names_the_field_and_the_allowed_values(tmp_path):
    path = write(tmp_path, "image:\n  sampler:\n    scheduler: heun\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert "image.sampler.scheduler" in str(info.value)
    assert "'ddim'" in str(info.value) and "'dpmsolver++'" in str(info.value)


def test_out_of_range_number_is_rejected(tmp_path):
    with pytest.raises(ConfigError, match=r"image\.sampler\.steps"):
        load_config(write(tmp_path, "image:\n  sampler:\n    steps: 0\n"))


def test_missing_and_malformed_files_name_the_file(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.yaml")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(write(tmp_path, "image: [unclosed\n"))
    with pytest.raises(ConfigError, match="mapping"):
        load_config(write(tmp_path, "- a list\n"))


@pytest.mark.parametrize("name", ["../escape", "a/b", "/abs", "..", ""])
def test_dataset_name_cannot_leave_the_output_folder(name):
    with pytest.raises(ValidationError, match="name"):
        ImageJob(name=name)


def test_layout_rejects_unknown_classes_and_inconsistent_ranges():
    with pytest.raises(ValidationError, match="unknown class"):
        LayoutSpec(classes=["circle", "hexagon"])
    with pytest.raises(ValidationError, match="class_frequencies"):
        LayoutSpec(classes=["circle"], class_frequencies={"square": 1.0})
    with pytest.raises(ValidationError, match="objects_per_image"):
        LayoutSpec(objects_per_image=(3, 2))
    with pytest.raises(ValidationError, match="size_range"):
        LayoutSpec(size_range=(0.5, 0.2))
    with pytest.raises(ValidationError, match="colour_bias"):
        LayoutSpec(colour_bias={"circle": {"red": 0.8, "blue": 0.5}})


def test_class_probabilities_normalise_targets():
    spec = LayoutSpec(classes=["circle", "square", "star"],
                      class_frequencies={"circle": 3, "square": 1})
    assert spec.class_probabilities() == {"circle": 0.75, "square": 0.25, "star": 0.0}


def test_shipped_configs_are_valid():
    from pathlib import Path

    configs = sorted(Path(__file__).resolve().parents[2].joinpath("configs").glob("*.yaml"))
    assert configs, "no configs shipped"
    for path in configs:
        assert isinstance(load_config(path), RunConfig)


def test_assignment_is_validated_too():
    spec = SamplerSpec()
    with pytest.raises(ValidationError):
        spec.steps = -1


def test_real_backends_need_their_weights_and_refuse_foreign_options():
    from augment.config import ModelSpec

    with pytest.raises(ValidationError, match="path: backend 'gligen' has no embedded weights"):
        ModelSpec(backend="gligen")
    with pytest.raises(ValidationError, match="controlnet: required for backend 'controlnet-seg'"):
        ModelSpec(backend="controlnet-seg", path="a/b")
    with pytest.raises(ValidationError, match="controlnet: required"):
        ModelSpec(backend="gligen", path="a/b", controlnet="c/d")
    with pytest.raises(ValidationError, match="palette, palette_background: only"):
        ModelSpec(backend="gligen", path="a/b", palette={"circle": "ball"})
    with pytest.raises(ValidationError, match="compile_unet, vae_tiling: only for the Stable"):
        ModelSpec(compile_unet=True, vae_tiling=True)
    with pytest.raises(ValidationError, match="cpu_offload: needs a GPU"):
        ModelSpec(backend="gligen", path="a/b", cpu_offload=True)
    with pytest.raises(ValidationError, match="'hexagon' is not an ADE20K class"):
        ModelSpec(backend="controlnet-seg", path="a/b", controlnet="c/d",
                  palette={"circle": "hexagon"})
    with pytest.raises(ValidationError, match="0..255"):
        ModelSpec(backend="controlnet-seg", path="a/b", controlnet="c/d",
                  palette={"circle": (0, 300, 0)})
    spec = ModelSpec(backend="controlnet-seg", path="a/b", controlnet="c/d", device="cuda",
                     cpu_offload=True, compile_unet=True, palette={"circle": [1, 2, 3]})
    assert spec.palette == {"circle": (1, 2, 3)}


def test_prompt_template_placeholders_are_checked():
    assert SamplerSpec(prompt_template="a photo of {caption}, {classes}").prompt_template
    with pytest.raises(ValidationError, match=r"(?s)prompt_template.*unknown placeholders \['colour'\]"):
        SamplerSpec(prompt_template="{colour} thing")
    with pytest.raises(ValidationError, match="prompt_template"):
        SamplerSpec(prompt_template="{caption")


def test_verification_method_follows_the_backend_and_clip_needs_local_weights(tmp_path):
    from augment.config import ModelSpec, VerifySpec

    real = ModelSpec(backend="gligen", path="a/b")
    assert VerifySpec().resolved_method("shapes-tiny") == "checker"
    assert VerifySpec(clip_checkpoint="w.safetensors").resolved_method("gligen") == "clip"
    assert VerifySpec(enabled=False, method="clip").resolved_method("gligen") == "none"
    with pytest.raises(ValidationError, match="verify.clip_checkpoint: verification of backend"):
        ImageJob(model=real)
    assert ImageJob(model=real, verify={"method": "none"}).verify.method == "none"
    with pytest.raises(ValidationError, match="layout.background_images: only for backend"):
        ImageJob(layout={"background_images": str(tmp_path)})
