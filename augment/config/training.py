"""Recipes of the embedded models' trainers (``synthmill train ...``): each trainer takes one of
these, so a recipe is written once, validated, and stored beside the weights it made."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from augment.config.base import Fraction, Strict


class TrainShapesSpec(Strict):
    """Recipe of the embedded ``shapes-tiny`` generator (``synthmill train shapes``)."""

    seed: int = 0
    resolution: Literal[32, 64] = 64
    steps: int = Field(4_600, ge=1)
    batch_size: int = Field(256, ge=1)
    learning_rate: float = Field(3e-4, gt=0)
    warmup_steps: int = Field(500, ge=0)
    ema_decay: float = Field(0.999, ge=0, lt=1)
    snr_gamma: float | None = Field(None, gt=0, description="Min-SNR loss weighting; None = off.")
    condition_dropout: Fraction = Field(0.1, description="Whole-condition dropout (for CFG).")
    colour_dropout: Fraction = Field(0.3, description="Per-instance colour left unspecified.")
    background_dropout: Fraction = 0.3
    num_scenes: int = Field(150_000, ge=16, description="Procedural training scenes to pre-render.")
    block_out_channels: tuple[int, ...] = (24, 48, 96, 128)
    layers_per_block: int = Field(1, ge=1)
    device: str = "auto"
    mixed_precision: Literal["no", "bf16", "fp16"] = "bf16"
    log_every: int = Field(200, ge=1)
