"""Recipes of the embedded models' trainers (``synthmill train ...``): each trainer takes one of
these, so a recipe is written once, validated, and stored beside the weights it made (the
``recipe`` of its ``training.json``). The defaults are the recipes of the shipped weights."""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import AfterValidator, Field, PositiveInt

from augment.config.base import Fraction, Strict

Steps = Annotated[int, Field(ge=1, description="Optimiser steps.")]
BatchSize = Annotated[int, Field(ge=1, description="Training images per step.")]
LearningRate = Annotated[float, Field(gt=0, description="Peak learning rate.")]
NumScenes = Annotated[int, Field(ge=16, description="Procedural training scenes to pre-render.")]
EvalScenes = Annotated[int, Field(ge=1, description="Held-out scenes (seed + 1) to evaluate on.")]
LogEvery = Annotated[int, Field(ge=1, description="Steps per point of the loss curve.")]


def _device(value: str) -> str:
    """``value`` if it names a torch device (or 'auto'), else ValueError."""
    if not re.fullmatch(r"cpu|auto|mps|cuda(:\d+)?", value):
        raise ValueError("must be 'cpu', 'cuda', 'cuda:N', 'mps' or 'auto'")
    return value


Device = Annotated[str, AfterValidator(_device),
                   Field(description="'cpu', 'cuda', 'cuda:N', 'mps' or 'auto' (cuda if present).")]


class TrainerSpec(Strict):
    """What every trainer's recipe holds."""

    seed: int = Field(0, ge=0, description="Seed of the training scenes, the initial weights and "
                                            "the batches; held-out scenes use seed + 1.")
    device: Device = "cpu"


class TrainShapesSpec(TrainerSpec):
    """Recipe of the embedded ``shapes-tiny`` generator (``synthmill train shapes``)."""

    device: Device = "auto"
    resolution: Literal[32, 64] = 64
    steps: Steps = 4_600
    batch_size: BatchSize = 256
    learning_rate: LearningRate = 3e-4
    warmup_steps: int = Field(500, ge=0)
    ema_decay: float = Field(0.999, ge=0, lt=1)
    snr_gamma: float | None = Field(None, gt=0, description="Min-SNR loss weighting; None = off.")
    condition_dropout: Fraction = Field(0.1, description="Whole-condition dropout (for CFG).")
    colour_dropout: Fraction = Field(0.3, description="Per-instance colour left unspecified.")
    background_dropout: Fraction = 0.3
    num_scenes: NumScenes = 150_000
    block_out_channels: tuple[PositiveInt, ...] = (24, 48, 96, 128)
    layers_per_block: int = Field(1, ge=1)
    mixed_precision: Literal["no", "bf16", "fp16"] = "bf16"
    log_every: LogEvery = 200


class TrainCheckerSpec(TrainerSpec):
    """Recipe of the shapes checker (``synthmill train checker``): a segmenter of class and colour
    trained on real scenes of the uniform-colour world."""

    num_scenes: NumScenes = 20_000
    steps: Steps = 2_000
    batch_size: BatchSize = 64
    learning_rate: LearningRate = 3e-3
    widths: tuple[PositiveInt, ...] = Field((16, 32, 48, 64), min_length=1,
                                            description="Channels per stage of the segmenter.")
    eval_scenes: EvalScenes = 1_000
    log_every: LogEvery = 100


class TrainShapesFeaturesSpec(TrainerSpec):
    """Recipe of the shapes-features extractor (``synthmill train shapes-features``): a trunk on a
    frozen copy of the shapes checker, trained on real scenes of the uniform-colour world."""

    num_scenes: NumScenes = 10_000
    steps: Steps = 400
    batch_size: BatchSize = 64
    learning_rate: LearningRate = 1e-3
    widths: tuple[PositiveInt, ...] = Field((24, 48, 96), min_length=1,
                                            description="Channels per stage of the trained trunk.")
    feature_dim: PositiveInt = Field(128, description="Size of the scene features (FID, KID, PRC).")
    background_dim: int = Field(16, ge=0, description="Features of the background branch; 0 = none.")
    eval_scenes: EvalScenes = 1_000
    checker: str | None = Field(None, description="shapes-checker folder copied in as the frozen "
                                                  "front end; None = the embedded one.")
    log_every: LogEvery = 100


class TrainClipSpec(TrainerSpec):
    """Recipe of the embedded CLIP, ``shapes-clip-tiny`` (``synthmill train clip``): contrastive
    training on real scenes of the uniform-colour world with their captions, and instance crops."""

    num_scenes: NumScenes = 8_000
    steps: Steps = 500
    batch_size: BatchSize = 128
    learning_rate: LearningRate = 2e-3
    weight_decay: float = Field(0.05, ge=0, description="AdamW decay of the weight matrices.")
    crop_fraction: Fraction = Field(0.5, description="Share of each batch that is instance crops.")
    eval_scenes: EvalScenes = 500
    log_every: LogEvery = 25
