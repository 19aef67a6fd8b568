"""``synthmill train ...``: re-train the embedded models from a fixed seed.

Every command takes an optional YAML file of its recipe (``augment.config.training``; without one,
the recipe of the shipped weights) and ``--set key=value`` overrides, with ``--seed`` / ``--device``
as shortcuts; ``--out`` is the folder the model, its config and ``training.json`` go to.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional

import typer

from augment.config.base import Strict
from augment.config.training import (TrainCheckerSpec, TrainClipSpec, TrainShapesFeaturesSpec,
                                     TrainShapesSpec)
from augment.config.training import TrainTonesClassifierSpec
from augment.config.training import TrainTonesSpec
from flows.cli_common import guarded, load_with_overrides

train_app = typer.Typer(help="Train the embedded models from scratch (reproducible from a seed).",
                        no_args_is_help=True, rich_markup_mode=None)

SetOption = typer.Option(None, "--set", metavar="FIELD=VALUE", help="Override a recipe field: --set steps=200 (YAML value). "
                                             "Repeatable.")
SeedOption = typer.Option(None, "--seed", help="Seed of the training scenes and the initial weights "
                                               "(same as --set seed=N).")
DeviceOption = typer.Option(None, "--device", help="cpu, cuda, cuda:N or auto (same as --set device=...).")


@dataclass(frozen=True)
class _Trainer:
    """One ``synthmill train`` command: its recipe model, its trainer and what it prints."""

    name: str
    spec: type[Strict]
    trainer: str  # "module:function", imported when the command runs (torch is slow to import)
    out: str  # default --out
    help: str
    summary: Callable[[Any, Path], str]  # (what the trainer returned, --out) -> the line printed


def _recipe(spec: type[Strict], config: Optional[Path], overrides: Optional[list[str]],
            seed: Optional[int], device: Optional[str]) -> Strict:
    """The recipe: the YAML file (or the defaults), then ``--set`` overrides, then the shortcuts."""
    shortcuts = [f"{key}={value}" for key, value in (("seed", seed), ("device", device)) if value is not None]
    return load_with_overrides(config, spec, [*(overrides or []), *shortcuts])


def _add_command(t: _Trainer) -> None:
    """Register ``synthmill train <t.name>``: load the recipe, run the trainer, print a summary."""

    def command(
        config: Optional[Path] = typer.Argument(
            None, help=f"YAML {t.spec.__name__} (default: the recipe of the shipped weights)."),
        out: Path = typer.Option(Path(t.out), "--out", help="Folder for the trained model."),
        overrides: Optional[list[str]] = SetOption,
        seed: Optional[int] = SeedOption,
        device: Optional[str] = DeviceOption,
    ) -> None:
        spec = guarded(_recipe, t.spec, config, overrides, seed, device)
        module, function = t.trainer.split(":")
        result = guarded(getattr(importlib.import_module(module), function), spec, out)
        typer.echo(t.summary(result, out))

    command.__doc__ = t.help
    train_app.command(t.name, short_help=t.help.split(" (")[0].split(".")[0] + ".")(command)


TRAINERS = (
    _Trainer("shapes", TrainShapesSpec, "augment.image.training.generator:train_shapes_generator",
             "models/shapes-tiny",
             "Train the embedded shapes-tiny generator from a fixed seed (GPU recommended).\n\n\b\nExample (a 2-step smoke run):\n"
             "  synthmill train shapes --out /tmp/shapes-tiny --device cpu "
             "--set steps=2 --set num_scenes=16 --set resolution=32 --set block_out_channels=[8,16]",
             lambda path, out: f"saved shapes-tiny to {path}"),
    _Trainer("tones", TrainTonesSpec, "augment.audio.training.generator:train_tones_generator",
             "models/tones-tiny",
             "Train the embedded tones-tiny generator (log-mel diffusion) on real tones-world "
             "clips from a fixed seed (runs on a CPU in about an hour). The shipped weights are "
             "this run, then a second stage: synthmill train tones "
             "configs/train/tones-tiny-stage2.yaml --out models/tones-tiny-stage2.\n\n\b\nExample (a 2-step smoke run):\n"
             "  synthmill train tones --out /tmp/tones-tiny "
             "--set steps=2 --set num_clips=16 --set batch_size=4 --set block_out_channels=[8,16]",
             lambda path, out: f"saved tones-tiny to {path}"),
    _Trainer("checker", TrainCheckerSpec, "augment.image.training.checker:train_checker",
             "models/shapes-checker",
             "Train the shapes checker (the independent verifier) on real procedural scenes.\n\n\b\nExample (a 20-step smoke run):\n"
             "  synthmill train checker --out /tmp/shapes-checker "
             "--set steps=20 --set num_scenes=64 --set eval_scenes=16",
             lambda report, out: f"saved shapes-checker to {out}; held-out mIoU "
                                 f"{report['held_out']['miou']:.3f}, colour instance accuracy "
                                 f"{report['held_out']['colour_instance_accuracy']:.3f}"),
    _Trainer("tones-classifier", TrainTonesClassifierSpec,
             "augment.audio.training.classifier:train_tones_classifier", "models/tones-classifier",
             "Train the embedded tones classifier (the audio verifier and evaluation features) on "
             "real tones-world clips.\n\n\b\nExample (a 20-step smoke run):\n"
             "  synthmill train tones-classifier --out /tmp/tones-classifier "
             "--set steps=20 --set num_clips=64 --set eval_clips=16",
             lambda report, out: f"saved tones-classifier to {out}; held-out class / pitch accuracy "
                                 f"{report['held_out']['clean']['class_accuracy']:.3f} / "
                                 f"{report['held_out']['clean']['pitch_accuracy']:.3f} (clean clips), "
                                 f"class {report['held_out']['backgrounds']['class_accuracy']:.3f} "
                                 "(over backgrounds)"),
    _Trainer("shapes-features", TrainShapesFeaturesSpec,
             "evaluation.image.training.shapes_features:train_shapes_features", "models/shapes-features",
             "Train the embedded fidelity feature extractor (shapes-features) on real procedural "
             "scenes.\n\n\b\nExample (a 20-step smoke run):\n"
             "  synthmill train shapes-features --out /tmp/shapes-features "
             "--seed 1 --set steps=20 --set num_scenes=64 --set eval_scenes=16",
             lambda report, out: f"saved shapes-features to {out}; held-out accuracy "
                                 f"{report['held_out']['accuracy']:.3f}"),
    _Trainer("clip", TrainClipSpec, "evaluation.image.training.clip:train_shapes_clip", "models/shapes-clip",
             "Train the embedded CLIP (shapes-clip-tiny) contrastively on shapes-world images and "
             "captions.\n\n\b\nExample (a 4-step smoke run):\n"
             "  synthmill train clip --out /tmp/shapes-clip "
             "--set steps=4 --set num_scenes=40 --set batch_size=16 --set eval_scenes=16",
             lambda report, out: f"saved shapes-clip-tiny to {out}; zero-shot shape accuracy "
                                 f"{report['held_out']['shape_accuracy']:.3f}, colour accuracy "
                                 f"{report['held_out']['colour_accuracy']:.3f}"),
)
for _trainer in TRAINERS:
    _add_command(_trainer)
