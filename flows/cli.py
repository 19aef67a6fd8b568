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
    """The main job: generate the datasets, evaluate and audit them, write the report."""
    run_config = _run(_run_config, config, out, overrides)
    from flows.pipeline import pipeline
    from flows.summaries import generation_markdown

    rid = run_id(f"run-{run_config.image.name}")
    report_dir = Path(run_config.evaluate.reports_dir if run_config.evaluate else "reports") / rid
    result = _run(pipeline, run_config, str(report_dir), {"run id": rid, "config": str(config)})
    for summary in result["generate"]:
        typer.echo(generation_markdown(Path(summary["path"]).name, summary) + "\n")
    if result["report"]:
        typer.echo((Path(result["report"]["summary"])).read_text().split("\n## ")[0])
        typer.echo(f"metrics: {report_dir / 'metrics.csv'}")
        typer.echo(f"report:  {result['report']['html']}")
    else:
        typer.echo(f"dataset: {result['generate'][0]['path']}")


def run_id(prefix: str) -> str:
    from datetime import datetime

    return f"{prefix}-{datetime.now().strftime('%Y%m%d-%H%M%S')}"


ReferenceOption = typer.Option(None, "--reference", "-r",
                               help="Image folder, dataset, COCO .json or stats .npz.")
EvalConfigOption = typer.Option(None, "--config", help="YAML EvalSpec.")


def _print_metrics(metrics_csv: str) -> None:
    import pandas as pd

    table = pd.read_csv(metrics_csv)
    cols = ["dataset", "metric", "group", "value", "ci_low", "ci_high", "n"]
    typer.echo(table[table.group == "all"][cols].round(4).to_string(index=False))


@app.command()
def evaluate(
    dataset: Path = typer.Argument(..., help="Synthmill dataset folder (or an image folder)."),
    reference: Optional[str] = ReferenceOption,
    config: Optional[Path] = EvalConfigOption,
    out: Optional[Path] = typer.Option(None, "--out", help="Report folder (default reports/<run-id>)."),
    overrides: Optional[list[str]] = SetOption,
) -> None:
    """FID, KID, IS, precision/recall, CLIP alignment, layout fidelity, diversity, memorization:
    each with N and a confidence interval; writes metrics.csv, summary.md and report.html."""
    from augment.config import EvalSpec, ReportSpec

    spec = _run(_load, config, EvalSpec, overrides)
    rid = run_id(f"eval-{dataset.name}")
    out = out or Path(spec.reports_dir) / rid
    from flows.evaluate import evaluate_flow

    paths = _run(evaluate_flow, str(dataset), spec, reference, str(out), ReportSpec(), {"run id": rid})
    _print_metrics(paths["metrics"])
    typer.echo(f"\nmetrics: {paths['metrics']}\nreport:  {paths['html']}")


@app.command()
def compare(
    datasets: list[Path] = typer.Argument(..., help="Two or more dataset folders."),
    reference: Optional[str] = ReferenceOption,
    config: Optional[Path] = EvalConfigOption,
    out: Optional[Path] = typer.Option(None, "--out", help="Report folder (default reports/<run-id>)."),
    overrides: Optional[list[str]] = SetOption,
) -> None:
    """Line up several datasets/generators in one table: best per metric, ties within intervals."""
    from augment.config import EvalSpec, ReportSpec

    spec = _run(_load, config, EvalSpec, overrides)
    rid = run_id("compare")
    out = out or Path(spec.reports_dir) / rid
    from flows.compare import compare_flow

    paths = _run(compare_flow, [str(d) for d in datasets], spec, reference, str(out),
                 ReportSpec(title="synthmill comparison"), {"run id": rid})
    _print_metrics(paths["metrics"])
    typer.echo(f"\nmetrics: {paths['metrics']}\nreport:  {paths['html']}")


@app.command("report")
def report_cmd(
    run_dirs: list[Path] = typer.Argument(..., help="Evaluation folders holding metrics.csv."),
    out: Path = typer.Option(..., "--out", help="Folder for the merged report."),
    datasets: Optional[list[Path]] = typer.Option(None, "--dataset", help="Dataset folders to show."),
) -> None:
    """(Re)write summary.md and report.html from existing metrics.csv files."""
    from augment.config import ReportSpec
    from evaluation.suite import report

    files = [d / "metrics.csv" for d in run_dirs]
    for f in files:
        if not f.exists():
            _fail(f"{f} not found: pass folders written by `synthmill evaluate` or `compare`")
    paths = _run(report, files, datasets or [], out, ReportSpec())
    typer.echo(f"report: {paths['html']}")


@app.command()
def reference(
    source: Path = typer.Argument(..., help="Image folder, synthmill dataset or COCO .json."),
    out: Path = typer.Option(..., "--out", help="Output .npz of reference features."),
    images: Optional[Path] = typer.Option(None, "--images", help="Image folder of a COCO file."),
    config: Optional[Path] = typer.Option(None, "--config", help="YAML EvalSpec (extractor)."),
    overrides: Optional[list[str]] = SetOption,
) -> None:
    """Compute a reference set's features once; pass the .npz to --reference afterwards."""
    from augment.config import EvalSpec
    from evaluation.evaluate import reference_from_set, save_reference
    from evaluation.image.extractors import fidelity_extractor

    spec = _run(_load, config, EvalSpec, overrides)
    ref, _ = _run(reference_from_set, source, spec, _run(fidelity_extractor, spec), images)
    save_reference(ref, out)
    typer.echo(f"saved {len(ref.features)} reference features ({ref.extractor}) to {out}")


@app.command("convert-weights")
def convert_weights(src: Path = typer.Argument(..., help="A .pth state dict (tensors only)."),
                    dst: Path = typer.Argument(..., help="Output .safetensors file.")) -> None:
    """Convert a PyTorch state dict to safetensors with a tensors-only unpickler (weights_only)."""
    import torch
    from safetensors.torch import save_file

    def convert():
        state = torch.load(src, map_location="cpu", weights_only=True)
        save_file({k: v.contiguous() for k, v in state.items()}, str(dst))

    _run(convert)
    typer.echo(f"wrote {dst}")


SeedOption = typer.Option(0, help="Seed of the training scenes and the initial weights.")
DeviceOption = typer.Option("cpu", help="cpu or cuda.")


@train_app.command("shapes")
def train_shapes(
    config: Optional[Path] = typer.Argument(None, help="YAML TrainShapesSpec (default: the shipped recipe)."),
    out: Path = typer.Option(Path("models/shapes-tiny"), "--out", help="Folder for the trained pipeline."),
    overrides: Optional[list[str]] = SetOption,
) -> None:
    """Train the embedded shapes-tiny generator from a fixed seed (GPU recommended)."""
    from augment.image.training.generator import train_shapes_generator

    spec = _run(_load, config, TrainShapesSpec, overrides)
    path = _run(train_shapes_generator, spec, out)
    typer.echo(f"saved shapes-tiny to {path}")


@train_app.command("checker")
def train_checker_cmd(
    out: Path = typer.Option(Path("models/shapes-checker"), "--out", help="Folder for the weights."),
    seed: int = SeedOption,
) -> None:
    """Train the shapes checker (the independent verifier) on real procedural scenes."""
    from augment.image.training.checker import train_checker

    metrics = _run(train_checker, out, seed=seed)
    typer.echo(f"saved shapes-checker to {out}; held-out: {metrics}")


@train_app.command("shapes-features")
def train_shapes_features_cmd(
    out: Path = typer.Option(Path("models/shapes-features"), "--out", help="Folder for the weights."),
    seed: int = SeedOption,
    device: str = DeviceOption,
) -> None:
    """Train the embedded fidelity feature extractor (shapes-features) on real procedural scenes."""
    from evaluation.image.training.shapes_features import train_shapes_features

    report = _run(train_shapes_features, out, seed=seed, device=device)
    typer.echo(f"saved shapes-features to {out}; held-out accuracy "
               f"{report['held_out']['accuracy']:.3f}")


@train_app.command("clip")
def train_clip_cmd(
    out: Path = typer.Option(Path("models/shapes-clip"), "--out", help="Folder for the weights."),
    seed: int = SeedOption,
    device: str = DeviceOption,
) -> None:
    """Train the embedded CLIP (shapes-clip-tiny) contrastively on shapes-world images and captions."""
    from evaluation.image.training.clip import train_shapes_clip

    report = _run(train_shapes_clip, out, seed=seed, device=device)
    held = report["held_out"]
    typer.echo(f"saved shapes-clip-tiny to {out}; zero-shot shape accuracy "
               f"{held['shape_accuracy']:.3f}, colour accuracy {held['colour_accuracy']:.3f}")


def entry() -> None:  # pragma: no cover - console script shim
    app()


if __name__ == "__main__":
    sys.exit(app())
