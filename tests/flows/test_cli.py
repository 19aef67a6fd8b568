"""The command line: self-explaining help, one-line errors that name the field or file."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from augment.config.base import ConfigError
from augment.config.image import ImageJob
from flows.cli import app
from flows.cli_common import apply_overrides
from flows.config import RunConfig

runner = CliRunner()


def test_help_lists_the_commands():
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    for command in ("generate", "run", "train"):
        assert command in result.output
    train = runner.invoke(app, ["train", "--help"])
    assert "shapes" in train.output


def test_invalid_config_is_one_line_naming_the_field(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("jobs:\n  - sampler:\n      steps: -3\n")
    result = runner.invoke(app, ["generate", str(path)])
    assert result.exit_code == 2
    assert "jobs.0.sampler.steps" in result.output and "Traceback" not in result.output


def test_missing_config_names_the_file(tmp_path):
    result = runner.invoke(app, ["run", str(tmp_path / "nope.yaml")])
    assert result.exit_code == 2 and "nope.yaml" in result.output


def test_set_overrides_are_validated_like_the_file():
    config = RunConfig(jobs=[ImageJob()])
    changed = apply_overrides(config, ["jobs.0.sampler.steps=7", "jobs.shapes.layout.colours=[red]"],
                              "x")
    assert changed.jobs[0].sampler.steps == 7 and changed.jobs[0].layout.colours == ["red"]
    with pytest.raises(ConfigError, match="jobs.0.sampler.stepz"):
        apply_overrides(config, ["jobs.0.sampler.stepz=7"], "x")
    with pytest.raises(ConfigError, match="key=value"):
        apply_overrides(config, ["nonsense"], "x")


@pytest.mark.parametrize("job, suffix", [
    ({"modality": "image", "model": {"backend": "shapes-world"}, "verify": {"enabled": False}},
     ".png"),
    ({"modality": "audio", "model": {"backend": "tones-world"}, "verify": {"enabled": False},
     "soundscape": {"duration": 2.0}}, ".wav"),
])
def test_replay_writes_the_sample_as_the_dataset_stores_it(tmp_path, job, suffix):
    from pydantic import TypeAdapter

    from augment.core.shards import generate_dataset
    from flows.config import Job

    job = TypeAdapter(Job).validate_python({"name": "x", "num_samples": 3, "shard_size": 3, **job})
    root, _ = generate_dataset(job, tmp_path)
    stored = next(p for p in root.rglob(f"000001{suffix}") if "masks" not in p.parts)
    result = runner.invoke(app, ["replay", str(root), "1", "--out", str(tmp_path / f"r{suffix}")])
    assert result.exit_code == 0, result.output
    assert (tmp_path / f"r{suffix}").read_bytes() == stored.read_bytes()
    wrong = runner.invoke(app, ["replay", str(root), "1", "--out", str(tmp_path / "r.txt")])
    assert wrong.exit_code == 2 and f"written as {suffix}" in wrong.output
    missing = runner.invoke(app, ["replay", str(root), "99", "--out", str(tmp_path / f"r{suffix}")])
    assert missing.exit_code == 2 and "no sample with id 99" in missing.output
