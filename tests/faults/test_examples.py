"""Every example a person copies runs (issue 14: the help's `--set sampler.steps=10` was rejected
by every command): each `synthmill ...` line of the README's bash blocks and of every command's
`--help`, in a workspace holding the folders they name.

Evaluation, reference, report and replay examples run for real on small procedural sets. The
examples that would generate hundreds of samples, train for an hour or serve until Ctrl-C run up
to the call that starts that work (their config parsed, `--set` applied and validated, inputs,
weights and locks checked), which is replaced by one that records the call and stops.
"""

from __future__ import annotations

import importlib
import re
import shlex
import shutil
from pathlib import Path

import pytest
import typer
import yaml
from typer.testing import CliRunner

from augment.core.versions import promote
from augment.testing.scenes import scenes_dataset
from evaluation.config import EvalSpec
from flows.cli import app
from flows.cli_common import SetOption, apply_overrides, load_config
from flows.config import RunConfig
from flows.train_cli import TRAINERS

ROOT = Path(__file__).resolve().parents[2]


class Reached(Exception):
    """Raised where an example's long-running work would start."""


def readme_examples() -> list[str]:
    text = (ROOT / "README.md").read_text()
    lines = []
    for block in re.findall(r"```bash\n(.*?)```", text, flags=re.S):
        for line in block.replace("\\\n", " ").splitlines():
            if line.strip().startswith("synthmill "):
                lines.append(line.strip())
    return lines


def help_examples() -> list[str]:
    lines = []

    def walk(command) -> None:
        lines.extend(line.strip() for line in (command.help or "").splitlines()
                     if line.strip().startswith("synthmill "))
        for sub in getattr(command, "commands", {}).values():
            walk(sub)

    walk(typer.main.get_command(app))
    return lines


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> Path:
    """The folders the examples name: configs, small datasets, local weights folders."""
    root = tmp_path_factory.mktemp("examples")
    shutil.copytree(ROOT / "configs", root / "configs")
    datasets = root / "datasets"
    scenes_dataset(datasets, "demo-shapes", 16, 1)  # replay asks for sample 12
    scenes_dataset(datasets, "demo-real-scenes", 8, 2)
    for i, name in enumerate(("a", "b", "mine", "real-pool", "real-test")):
        scenes_dataset(datasets, name, 6, 3 + i)
    scenes_dataset(datasets, "shapes-nightly", 6, 9, version="v0001")
    promote(datasets / "shapes-nightly", "v0001")
    (root / "my-real-images").mkdir()
    for image in sorted((datasets / "demo-real-scenes" / "images").glob("*.png")):
        shutil.copy(image, root / "my-real-images")
    for folder in ("models/sd15", "models/control-seg", "models/open_clip"):
        (root / folder).mkdir(parents=True)
    (root / "models/open_clip/open_clip_model.safetensors").write_bytes(b"")
    return root


@pytest.fixture
def long_work_stops(monkeypatch) -> list:
    """Replace the calls that start long work (generation, the pipeline, training, serving, the
    utility study) by one that records its arguments and raises Reached."""
    calls = []

    def reached(*args, **kwargs):
        calls.append(args)
        raise Reached()

    import flows.generate
    import flows.interrupt
    import flows.pipeline
    import flows.schedule
    import flows.utility
    import prefect

    monkeypatch.setattr(flows.generate, "run_generate", reached)
    monkeypatch.setattr(flows.interrupt, "start_server_ignoring_ctrl_c", lambda: None)  # for flows
    monkeypatch.setattr(flows.pipeline, "pipeline", reached)
    monkeypatch.setattr(flows.utility, "utility_flow", reached)
    monkeypatch.setattr(flows.schedule, "check_server", lambda: "http://127.0.0.1:1/api")
    monkeypatch.setattr(prefect, "serve", reached)
    for trainer in TRAINERS:
        module, function = trainer.trainer.split(":")
        monkeypatch.setattr(importlib.import_module(module), function, reached)
    return calls


def _run(line: str, cwd: Path, monkeypatch) -> None:
    argv = shlex.split(line, comments=True)
    assert argv[0] == "synthmill"
    monkeypatch.chdir(cwd)
    result = CliRunner().invoke(app, argv[1:])
    if isinstance(result.exception, Reached):
        return
    assert result.exit_code == 0, f"{line}\n{result.output}"


def test_every_readme_example_runs(workspace, long_work_stops, monkeypatch):
    examples = readme_examples()
    assert len(examples) >= 14, examples  # the README's command-line, evaluation, utility, ... blocks
    for line in examples:
        before = len(long_work_stops)
        _run(line, workspace, monkeypatch)
        if line.split()[1] in ("generate", "run", "utility", "serve", "train"):
            assert len(long_work_stops) == before + 1, f"{line} did not reach its work"
    assert (workspace / "sample12.png").exists()
    assert (workspace / "real-stats.npz").exists()
    assert (workspace / "reports" / "merged" / "report.html").exists()
    generated = [call for call in long_work_stops if isinstance(call[0], RunConfig)]
    assert generated[0][0].job("demo-shapes").num_samples == 500  # --set applied by name
    controlnet = next(c[0] for c in generated if c[0].jobs[0].model.backend == "controlnet-seg")
    assert controlnet.jobs[0].model.controlnet == "models/control-seg"


def test_every_help_example_runs(workspace, long_work_stops, monkeypatch):
    examples = help_examples()
    assert len(examples) >= 10, examples  # generate, serve, replay, utility, six trainers
    for line in examples:
        _run(line, workspace, monkeypatch)
    trained = [call[0] for call in long_work_stops if hasattr(call[0], "steps")]
    assert len(trained) == len(TRAINERS) and all(spec.steps <= 20 for spec in trained)


def test_help_labels_read_as_words_not_python_types():
    """Issue 14: `--debug <bool>` and `<list[str]>` read oddly. Every command's help labels a value
    by what it is (`<path>`, `<str>`, `FIELD=VALUE`), a list by its items (`datasets... <path>`)."""
    runner = CliRunner()
    names = [[]]

    def walk(command, path) -> None:
        for name, sub in getattr(command, "commands", {}).items():
            names.append(path + [name])
            walk(sub, path + [name])

    walk(typer.main.get_command(app), [])
    assert len(names) > 15
    for argv in names:
        shown = runner.invoke(app, argv + ["--help"], prog_name="synthmill").output
        assert "Usage: synthmill" in shown, argv
        odd = re.findall(r"<(?:list|bool|Optional|dict|tuple)\b[^>]*>|\[[A-Z]\w*\]>", shown)
        assert not odd, (argv, odd)
    compare = runner.invoke(app, ["compare", "--help"]).output
    assert re.search(r"datasets\.\.\. <path>\s+Two or more dataset folders", compare)
    assert "--dataset <path>" in runner.invoke(app, ["report", "--help"]).output


def test_the_set_option_examples_apply_to_the_configs_they_name():
    """`--help` shows `--set X in a run config` and `--set Y in evaluation settings`."""
    shown = dict((kind, path) for path, kind in re.findall(
        r"--set (\S+) in (a run config|evaluation settings)", " ".join(SetOption.help.split())))
    assert set(shown) == {"a run config", "evaluation settings"}
    run = apply_overrides(load_config(ROOT / "configs" / "demo.yaml", RunConfig),
                          [shown["a run config"]], "--set")
    assert run.jobs[0].sampler.steps == int(shown["a run config"].split("=")[1])
    evaluation = apply_overrides(EvalSpec(), [shown["evaluation settings"]], "--set")
    assert evaluation != EvalSpec()
    yaml.safe_dump(evaluation.model_dump(mode="json"))  # still a config that can be written


def test_the_check_fails_an_example_that_is_rejected(workspace, long_work_stops, monkeypatch):
    """What the help showed before: `--set sampler.steps=10` is not a run config's field."""
    with pytest.raises(AssertionError, match="sampler"):
        _run("synthmill generate configs/demo.yaml --set sampler.steps=10", workspace, monkeypatch)
    assert long_work_stops == []
