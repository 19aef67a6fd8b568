"""Recipes of the embedded models' trainers (``synthmill train ...``): each trainer takes one of
these, so a recipe is written once, validated, and stored beside the weights it made (the
``recipe`` of its ``training.json``). The defaults are the recipes of the shipped weights."""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import AfterValidator, Field, PositiveFloat, PositiveInt, field_validator

from augment.audio.world import CLASSES
from augment.config.base import Fraction, Strict, known

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


class TrainTonesSpec(TrainerSpec):
    """Recipe of the embedded ``tones-tiny`` generator (``synthmill train tones``): log-mel
    diffusion trained on real tones-world event clips (beeps high-pitched 60% of the time, the
    planted skew the audio bias audit must find). The defaults are stage 1 of the shipped weights
    (trained on the CPU); stage 2, ``configs/train/tones-tiny-stage2.yaml``, goes on from them with
    ``init_from`` and ``class_weights``."""

    num_clips: int = Field(16_000, ge=16, description="Real event clips to pre-render.")
    steps: Steps = 3_500
    batch_size: BatchSize = 32
    learning_rate: LearningRate = 5e-4
    warmup_steps: int = Field(200, ge=0)
    ema_decay: float = Field(0.999, ge=0, lt=1)
    prediction_type: Literal["epsilon", "v_prediction"] = Field(
        "v_prediction", description="What the UNet predicts (v: the mostly silent spectrograms are "
                                    "far from zero mean).")
    snr_gamma: float | None = Field(None, gt=0, description="Min-SNR loss weighting; None = off.")
    condition_dropout: Fraction = Field(0.1, description="All labels dropped (for CFG).")
    pitch_dropout: Fraction = Field(
        0.2, description="Pitch band left unspecified (the model learns the pitch prior).")
    block_out_channels: tuple[PositiveInt, ...] = (16, 32, 64, 96, 128)
    layers_per_block: int = Field(1, ge=1)
    patch_size: Literal[1, 2, 4] = Field(
        1, description="Side of the UNet's square patches (2 is 2x cheaper, but its samples "
                       "alternate between even and odd frames, which reads as modulation).")
    attention_levels: int = Field(1, ge=0, description="Coarsest resolutions with self-attention.")
    mixed_precision: Literal["no", "bf16", "fp16"] = "no"
    log_every: LogEvery = 50
    init_from: str | None = Field(
        None, description="A tones-tiny folder whose UNet weights training starts from (a second "
                          "stage); None = fresh weights from the seed. Its architecture must be "
                          "the recipe's.")
    class_weights: dict[str, PositiveFloat] = Field(
        default_factory=dict, description="Relative batch share of a class's clips (a class not "
                                          "named weighs 1); pitch bands within a class keep their "
                                          "training distribution.")

    @field_validator("class_weights")
    @classmethod
    def _known_classes(cls, value: dict[str, float]) -> dict[str, float]:
        known("class", list(value), CLASSES)
        return value


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


def _ordered(value: tuple) -> tuple:
    """``value`` if it is a (min, max) pair with min <= max, else ValueError."""
    if value[0] > value[1]:
        raise ValueError(f"must satisfy min <= max, got {tuple(value)}")
    return value


class TrainTonesClassifierSpec(TrainerSpec):
    """Recipe of the embedded tones classifier (``synthmill train tones-classifier``): a CNN on
    log-mels with a class and a pitch-band head, trained on real tones-world clips only."""

    num_clips: int = Field(10_000, ge=16, description="Real training clips to pre-render.")
    background_share: Fraction = Field(
        0.125, description="Share of clips that hold only a background (class 'background').")
    mixed_share: Fraction = Field(0.5, description="Share of event clips mixed over a background.")
    snr_db: Annotated[tuple[float, float], AfterValidator(_ordered)] = Field(
        (0.0, 25.0), description="Event RMS over the background's, dB (mixed clips).")
    gain_db: Annotated[tuple[float, float], AfterValidator(_ordered)] = Field(
        (-25.0, 10.0), description="Gain of the whole clip, dB; sounds are rendered at -20 dBFS RMS.")
    window_share: Fraction = Field(
        0.3, description="Share of clips whose content ends early, zero-padded after (a window cut "
                         "from a soundscape); their event may be cut at the window's edges.")
    start_share: Fraction = Field(
        0.25, description="Share of the other event clips whose event starts at sample 0 (as a "
                          "generated clip holds it).")
    griffin_lim_share: Fraction = Field(
        0.25, description="Share of clips round-tripped through log-mel and Griffin-Lim.")
    griffin_lim_iters: Annotated[tuple[PositiveInt, PositiveInt], AfterValidator(_ordered)] = Field(
        (8, 32), description="Griffin-Lim iterations of a round trip, drawn uniformly.")
    steps: Steps = 2_000
    batch_size: BatchSize = 64
    learning_rate: LearningRate = 3e-3
    widths: tuple[PositiveInt, ...] = Field((16, 32, 64, 96), min_length=1, max_length=6,
                                            description="Channels of the stem and each stage.")
    feature_dim: PositiveInt = Field(128, description="Size of the penultimate features (FAD).")
    eval_clips: int = Field(800, ge=1, description="Held-out clips (seed + 1) per setting.")
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
