"""Every run setting of synthmill, as pydantic models: the CLI, the flows and the library entry
points all take these, so no parameter list is written twice.

``extra="forbid"`` everywhere: an unknown or misspelt key is an error that names it.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from augment.shapes.world import BACKGROUNDS, CLASSES, COLOURS

SCHEDULERS = ("ddpm", "ddim", "dpmsolver++", "unipc", "euler")
DTYPES = ("float32", "float16", "bfloat16")
_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")

Fraction = Annotated[float, Field(ge=0.0, le=1.0)]


class Strict(BaseModel):
    """Base of every config model: unknown keys are errors, values are validated on assignment."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class ModelSpec(Strict):
    """Which generator renders the layouts, and where it runs."""

    backend: Literal["shapes-tiny"] = "shapes-tiny"
    path: str | None = Field(
        None, description="Hub id or local folder of the weights; None = the embedded weights.")
    dtype: Literal["float32", "float16", "bfloat16"] = "float32"
    device: str = Field("cpu", description="'cpu', 'cuda', 'cuda:N' or 'auto' (cuda if present).")

    @field_validator("device")
    @classmethod
    def _device(cls, value: str) -> str:
        if not re.fullmatch(r"cpu|auto|cuda(:\d+)?|mps", value):
            raise ValueError("must be 'cpu', 'auto', 'cuda', 'cuda:N' or 'mps'")
        return value


class SamplerSpec(Strict):
    """How the reverse diffusion is run."""

    scheduler: Literal["ddpm", "ddim", "dpmsolver++", "unipc", "euler"] = "dpmsolver++"
    steps: int = Field(20, ge=1, le=1000)
    guidance: float = Field(3.0, ge=0.0, le=30.0, description="Classifier-free guidance; 1 = off.")
    eta: float = Field(0.0, ge=0.0, le=1.0, description="DDIM eta (0 = deterministic).")
    noise_temperature: float = Field(1.0, gt=0.0, le=2.0, description="Scale of the initial noise.")
    batch_size: int = Field(16, ge=1, le=1024)


class LayoutSpec(Strict):
    """What the layout sampler draws: the labels exist before the pixels."""

    height: int = Field(64, ge=16, le=2048)
    width: int = Field(64, ge=16, le=2048)
    classes: list[str] = Field(default_factory=lambda: list(CLASSES), min_length=1)
    class_frequencies: dict[str, float] | None = Field(
        None, description="Target share of each class among objects (normalised); None = uniform.")
    objects_per_image: tuple[int, int] = (1, 4)
    size_range: tuple[float, float] = Field(
        (0.22, 0.42), description="Object diameter as a fraction of the shorter image side.")
    position_range: tuple[float, float] = Field(
        (0.15, 0.85), description="Object centre range as a fraction of width/height.")
    allow_occlusion: bool = True
    min_visible: float = Field(
        0.5, gt=0.0, le=1.0, description="Smallest visible share of an object after occlusion.")
    colours: list[str] = Field(default_factory=lambda: list(COLOURS), min_length=1)
    colour_bias: dict[str, dict[str, float]] = Field(
        default_factory=dict, description="P(colour | class) for listed pairs; rest uniform.")
    colour_unspecified: Fraction = Field(
        0.0, description="Share of instances whose colour is left to the generator.")
    backgrounds: list[str] = Field(default_factory=lambda: list(BACKGROUNDS), min_length=1)
    background_unspecified: Fraction = 0.0

    @field_validator("classes")
    @classmethod
    def _classes(cls, value: list[str]) -> list[str]:
        return _known("class", value, CLASSES)

    @field_validator("colours")
    @classmethod
    def _colours(cls, value: list[str]) -> list[str]:
        return _known("colour", value, COLOURS)

    @field_validator("backgrounds")
    @classmethod
    def _backgrounds(cls, value: list[str]) -> list[str]:
        return _known("background", value, BACKGROUNDS)

    @model_validator(mode="after")
    def _consistent(self) -> "LayoutSpec":
        lo, hi = self.objects_per_image
        if not 1 <= lo <= hi <= 16:
            raise ValueError("objects_per_image must satisfy 1 <= min <= max <= 16")
        for name, (a, b) in (("size_range", self.size_range), ("position_range", self.position_range)):
            if not 0.0 < a <= b <= 1.0:
                raise ValueError(f"{name} must satisfy 0 < min <= max <= 1, got ({a}, {b})")
        if self.class_frequencies is not None:
            unknown = set(self.class_frequencies) - set(self.classes)
            if unknown:
                raise ValueError(f"class_frequencies names classes not in classes: {sorted(unknown)}")
            if any(v < 0 for v in self.class_frequencies.values()) or not any(
                    self.class_frequencies.values()):
                raise ValueError("class_frequencies must be >= 0 with a positive total")
        for cls_name, dist in self.colour_bias.items():
            _known("class", [cls_name], CLASSES)
            _known("colour", list(dist), COLOURS)
            if sum(dist.values()) > 1.0 + 1e-9 or any(v < 0 for v in dist.values()):
                raise ValueError(f"colour_bias[{cls_name}] must be probabilities summing to <= 1")
        return self

    def class_probabilities(self) -> dict[str, float]:
        """Normalised target frequency of each class (uniform when none are given)."""
        raw = self.class_frequencies or {c: 1.0 for c in self.classes}
        weights = {c: float(raw.get(c, 0.0)) for c in self.classes}
        total = sum(weights.values())
        return {c: w / total for c, w in weights.items()}


class VerifySpec(Strict):
    """Post-hoc check of every instance by a model that is not the generator."""

    enabled: bool = True
    min_score: Fraction = Field(
        0.5, description="Keep a sample only if every instance scores at least this (IoU).")


class ImageJob(Strict):
    """One labeled image dataset."""

    name: str = Field("shapes", description="Dataset folder name under the output folder.")
    num_samples: int = Field(64, ge=1, le=10_000_000)
    seed: int = Field(0, ge=0, lt=2**63)
    shard_size: int = Field(32, ge=1, le=100_000)
    val_fraction: Fraction = 0.1
    model: ModelSpec = Field(default_factory=ModelSpec)
    sampler: SamplerSpec = Field(default_factory=SamplerSpec)
    layout: LayoutSpec = Field(default_factory=LayoutSpec)
    verify: VerifySpec = Field(default_factory=VerifySpec)

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not _SAFE_NAME.match(value) or value in {".", ".."}:
            raise ValueError("must be a plain folder name: letters, digits, '.', '_', '-' "
                             "(no path separators), at most 100 characters")
        return value

    @property
    def num_shards(self) -> int:
        return -(-self.num_samples // self.shard_size)


class RunnerSpec(Strict):
    """Which Prefect task runner executes shards."""

    kind: Literal["threads", "dask", "ray"] = "threads"
    max_workers: int = Field(1, ge=1, le=1024)
    address: str | None = Field(None, description="Existing Dask scheduler / Ray cluster address.")


class RunConfig(Strict):
    """A whole run: what to generate, where to write it, how to execute it."""

    out: str = Field("datasets", description="Output folder for datasets.")
    image: ImageJob | None = None
    runner: RunnerSpec = Field(default_factory=RunnerSpec)


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


class ConfigError(ValueError):
    """A config file that cannot be used; the message names the file and the field."""


def _known(kind: str, values: list[str], allowed: tuple[str, ...]) -> list[str]:
    unknown = [v for v in values if v not in allowed]
    if unknown:
        raise ValueError(f"unknown {kind} {unknown}; allowed: {list(allowed)}")
    if len(set(values)) != len(values):
        raise ValueError(f"duplicate {kind} names in {values}")
    return values


def format_validation_error(error: ValidationError, source: str) -> str:
    """One line per problem: ``source: field.path: message``."""
    lines = []
    for item in error.errors():
        field = ".".join(str(p) for p in item["loc"]) or "(top level)"
        message = item["msg"]
        if item["type"] == "extra_forbidden":
            message = "unknown key (check the spelling; extra keys are not allowed)"
        lines.append(f"{source}: {field}: {message}")
    return "\n".join(lines)


def load_config(path: str | Path, model: type[Strict] = RunConfig) -> Strict:
    """Read a YAML file into ``model``; raise ``ConfigError`` naming the file and the fields."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ConfigError(f"{path}: config file not found") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of keys to values")
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, str(path))) from exc
