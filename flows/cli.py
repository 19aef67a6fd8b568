"""``synthmill``: the command line. Each command loads a config model and calls a flow or a library
entry point with it; errors are one clear line unless ``--debug``."""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Optional

import typer
import yaml
from pydantic import ValidationError

from augment.config import ConfigError, RunConfig, Strict, TrainShapesSpec, format_validation_error, load_config

app = typer.Typer(help="synthmill: labeled synthetic datasets from conditional diffusion models, "
                       "with honest quality numbers.", no_args_is_help=True, add_completion=False)
train_app = typer.Typer(help="Train the embedded models from scratch (reproducible from a seed).",
                        no_args_is_help=True)
app.add_typer(train_app, name="train")

_state = {"debug": False}

SetOption = typer.Option(None, "--set", help="Override a config field: --set sampler.steps=10 "
                                             "(dotted path, YAML value). Repeatable.")


@app.callback()
def main(debug: bool = typer.Option(False, "--debug", help="Show full tracebacks."),
         verbose: bool = typer.Option(False, "--verbose", "-v", help="Log at INFO level.")) -> None:
    _state["debug"] = debug
    from diffusers.utils import logging as diffusers_logging

    diffusers_logging.disable_progress_bar()  # our own bars show progress; no per-load bars
    logging.basicConfig(level=logging.INFO if verbose or debug else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")


def _fail(message: str) -> None:
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    raise typer.Exit(2)


def _run(fn, *args, **kwargs):
    """Call ``fn``; turn expected failures into one line (``--debug`` keeps the traceback)."""
    try:
        return fn(*args, **kwargs)
    except (ConfigError, FileNotFoundError, FileExistsError, ValueError, RuntimeError,
            PermissionError) as exc:
        if _state["debug"]:
            raise
        _fail(str(exc))


def apply_overrides(model: Strict, overrides: list[str] | None, source: str) -> Strict:
    """Return a copy of ``model`` with ``a.b.c=value`` overrides applied and re-validated."""
    if not overrides:
        return model
    data = model.model_dump(mode="json")
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"--set {item!r}: expected key=value, e.g. --set sampler.steps=10")
        node = data
        parts = key.split(".")
        for part in parts[:-1]:
            if not isinstance(node.get(part), dict):
                node[part] = {}
            node = node[part]
        node[parts[-1]] = yaml.safe_load(value)
    try:
        return type(model).model_validate(data)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, source)) from exc


def _load(config: Optional[Path], model: type[Strict], overrides: list[str] | None) -> Strict:
    base = load_config(config, model) if config else model()
    return apply_overrides(base, overrides, str(config or "--set"))


def _run_config(config: Path, out: Optional[Path], overrides: list[str] | None) -> RunConfig:
    run_config = _load(config, RunConfig, overrides)
    if out is not None:
        run_config = run_config.model_copy(update={"out": str(out)})
    if run_config.image is None:
        raise ConfigError(f"{config}: image: this config has no image job")
    return run_config


OutOption = typer.Option(None, "--out", help="Output folder for datasets (overrides the config's out).")
ConfigArg = typer.Argument(..., exists=False, help="YAML run config (see configs/).")


@app.command()
def generate(config: Path = ConfigArg, out: Optional[Path] = OutOption,
             overrides: Optional[list[str]] = SetOption) -> None:
    """Generate a labeled dataset (resumes an interrupted run of the same config)."""
    run_config = _run(_run_config, config, out, overrides)
    from flows.generate import run_generate
    from flows.summaries import generation_markdown

    summary = _run(run_generate, run_config)
    typer.echo(generation_markdown(run_config.image.name, summary))


@app.command()
def run(config: Path = ConfigArg, out: Optional[Path] = OutOption,
        overrides: Optional[list[str]] = SetOption) -> None:
    """The main job: generate, then evaluate and report (as configured)."""
    run_config = _run(_run_config, config, out, overrides)
    from flows.pipeline import pipeline
    from flows.summaries import generation_markdown

    result = _run(pipeline, run_config)
    typer.echo(generation_markdown(run_config.image.name, result["generate"]))
    typer.echo(f"\ndataset: {result['generate']['path']}")


@train_app.command("shapes")
def train_shapes(
    config: Optional[Path] = typer.Argument(None, help="YAML TrainShapesSpec (default: the shipped recipe)."),
    out: Path = typer.Option(Path("models/shapes-tiny"), "--out", help="Folder for the trained pipeline."),
    overrides: Optional[list[str]] = SetOption,
) -> None:
    """Train the embedded shapes-tiny generator from a fixed seed (GPU recommended)."""
    from augment.training.generator import train_shapes_generator

    spec = _run(_load, config, TrainShapesSpec, overrides)
    path = _run(train_shapes_generator, spec, out)
    typer.echo(f"saved shapes-tiny to {path}")


@train_app.command("checker")
def train_checker_cmd(
    out: Path = typer.Option(Path("models/shapes-checker"), "--out", help="Folder for the weights."),
    seed: int = typer.Option(0, help="Seed of the training scenes and the initial weights."),
) -> None:
    """Train the shapes checker (the independent verifier) on real procedural scenes."""
    from augment.training.checker import train_checker

    metrics = _run(train_checker, out, seed=seed)
    typer.echo(f"saved shapes-checker to {out}; held-out: {metrics}")


def entry() -> None:  # pragma: no cover - console script shim
    app()


if __name__ == "__main__":
    sys.exit(app())
