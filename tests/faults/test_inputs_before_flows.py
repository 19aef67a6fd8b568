"""Faults a person meets first (issue 14): a wrong input path or a folder another run holds is
refused in one line before any flow (and its Prefect server) starts, and nothing is written."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import soundfile
import yaml

from augment.core.io import FolderLock

SYNTHMILL = str(Path(sys.executable).parent / "synthmill")


def _run(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([SYNTHMILL, *args], cwd=cwd, capture_output=True, text=True, timeout=120)


def _one_error_line(done: subprocess.CompletedProcess) -> str:
    assert done.returncode == 2 and done.stdout == ""
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "prefect" not in done.stderr.lower(), done.stderr
    return lines[0]


def test_evaluate_names_a_missing_dataset_and_writes_nothing(tmp_path):
    line = _one_error_line(_run(["evaluate", "bad/nope"], tmp_path))
    assert line == "error: dataset: bad/nope does not exist"
    assert not (tmp_path / "reports").exists()


def test_compare_and_evaluate_name_which_input_is_missing(tmp_path):
    (tmp_path / "a").mkdir()
    line = _one_error_line(_run(["compare", "a", "b"], tmp_path))
    assert line == "error: dataset 2: b does not exist"
    line = _one_error_line(_run(["evaluate", "a", "--reference", "real.npz"], tmp_path))
    assert line == "error: --reference: real.npz does not exist"


def test_a_locked_dataset_folder_is_refused_before_the_flow_starts(tmp_path):
    config = tmp_path / "run.yaml"
    config.write_text(yaml.safe_dump({"out": "datasets", "jobs": [
        {"name": "busy", "num_samples": 2, "model": {"backend": "shapes-world"}}]}))
    with FolderLock(tmp_path / "datasets" / "busy"):  # another run holds it
        line = _one_error_line(_run(["generate", str(config)], tmp_path))
    assert "datasets/busy is in use by another synthmill run" in line
    assert sorted(p.name for p in (tmp_path / "datasets" / "busy").iterdir()) == [".lock"]


def _controlnet_config(tmp_path: Path, **verify) -> Path:
    config = tmp_path / "cn.yaml"
    config.write_text(yaml.safe_dump({"out": "datasets", "jobs": [
        {"name": "cn", "num_samples": 4, "shard_size": 1,
         "model": {"backend": "controlnet-seg", "path": str(tmp_path / "sd15"),
                   "controlnet": str(tmp_path / "cn")},
         "verify": verify or {"method": "none"}}]}))
    return config


def test_missing_weights_are_refused_naming_the_job_and_field_before_any_shard(tmp_path):
    """Was: 632 lines (16 identical shard tracebacks) and a half-made folder with .lock."""
    config = _controlnet_config(tmp_path)
    for command in ("generate", "run"):
        line = _one_error_line(_run([command, str(config)], tmp_path))
        assert line == f"error: jobs cn: model.path: model folder {tmp_path / 'sd15'} does not exist"
    (tmp_path / "sd15").mkdir()  # the next missing place is named in turn
    line = _one_error_line(_run(["generate", str(config)], tmp_path))
    assert line == f"error: jobs cn: model.controlnet: model folder {tmp_path / 'cn'} does not exist"
    (tmp_path / "cn").mkdir()
    config = _controlnet_config(tmp_path, method="clip", clip_checkpoint=str(tmp_path / "c.safetensors"))
    line = _one_error_line(_run(["generate", str(config)], tmp_path))
    assert line == f"error: jobs cn: verify.clip_checkpoint: {tmp_path / 'c.safetensors'} does not exist"
    assert not (tmp_path / "datasets").exists()


def test_run_refuses_a_locked_folder_before_the_pipeline_starts(tmp_path):
    config = tmp_path / "run.yaml"
    config.write_text(yaml.safe_dump({"out": "datasets", "jobs": [
        {"name": "busy", "num_samples": 2, "model": {"backend": "shapes-world"}}]}))
    with FolderLock(tmp_path / "datasets" / "busy"):
        line = _one_error_line(_run(["run", str(config)], tmp_path))
    assert "datasets/busy is in use by another synthmill run" in line
    assert not (tmp_path / "reports").exists()


def _run_config(tmp_path: Path, reference: str) -> Path:
    config = tmp_path / "run.yaml"
    config.write_text(yaml.safe_dump({"out": "datasets", "jobs": [
        {"name": "s", "num_samples": 2, "model": {"backend": "shapes-world"}}],
        "evaluate": {"reference": reference, "metrics": ["fid"]}}))
    return config


def test_run_names_a_missing_evaluation_input_before_generating(tmp_path):
    line = _one_error_line(_run(["run", str(_run_config(tmp_path, "nope/missing"))], tmp_path))
    assert line == "error: evaluate.reference: nope/missing does not exist"
    assert not (tmp_path / "datasets").exists()


def test_a_failure_inside_a_flow_is_one_line_without_prefect_logs(tmp_path):
    """An image run scored against an audio reference fails inside the pipeline flow."""
    audio = tmp_path / "tones"
    audio.mkdir()
    for i in range(2):
        soundfile.write(audio / f"{i}.wav", np.zeros(1600, dtype=np.float32), 16000)
    done = _run(["run", str(_run_config(tmp_path, str(audio)))], tmp_path)
    assert done.returncode == 2
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert errors == [f"error: reference {audio} holds audio samples; image datasets need a "
                      "reference of image samples"]
    assert "Traceback" not in done.stderr and "prefect" not in done.stderr.lower(), done.stderr
