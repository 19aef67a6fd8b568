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
