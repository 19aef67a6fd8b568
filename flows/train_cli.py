"""``synthmill train ...``: re-train the embedded models from a fixed seed."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from augment.config.training import TrainShapesSpec
from flows.cli_common import SetOption, load_with_overrides, guarded

train_app = typer.Typer(help="Train the embedded models from scratch (reproducible from a seed).",
                        no_args_is_help=True)

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

    spec = guarded(load_with_overrides, config, TrainShapesSpec, overrides)
    path = guarded(train_shapes_generator, spec, out)
    typer.echo(f"saved shapes-tiny to {path}")


@train_app.command("checker")
def train_checker_cmd(
    out: Path = typer.Option(Path("models/shapes-checker"), "--out", help="Folder for the weights."),
    seed: int = SeedOption,
) -> None:
    """Train the shapes checker (the independent verifier) on real procedural scenes."""
    from augment.image.training.checker import train_checker

    metrics = guarded(train_checker, out, seed=seed)
    typer.echo(f"saved shapes-checker to {out}; held-out: {metrics}")


@train_app.command("shapes-features")
def train_shapes_features_cmd(
    out: Path = typer.Option(Path("models/shapes-features"), "--out", help="Folder for the weights."),
    seed: int = SeedOption,
    device: str = DeviceOption,
) -> None:
    """Train the embedded fidelity feature extractor (shapes-features) on real procedural scenes."""
    from evaluation.image.training.shapes_features import train_shapes_features

    report = guarded(train_shapes_features, out, seed=seed, device=device)
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

    report = guarded(train_shapes_clip, out, seed=seed, device=device)
    held = report["held_out"]
    typer.echo(f"saved shapes-clip-tiny to {out}; zero-shot shape accuracy "
               f"{held['shape_accuracy']:.3f}, colour accuracy {held['colour_accuracy']:.3f}")
