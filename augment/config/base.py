"""The base of every synthmill config model, and what all modalities' jobs share.

``extra="forbid"`` everywhere: an unknown or misspelt key is an error that names it. Config files
are YAML; ``load_config`` reads one into any model and turns pydantic's errors into one line per
problem, ``file: field.path: message``.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal

import yaml
from pydantic import (BaseModel, ConfigDict, Field, ValidationError, WrapValidator, field_validator,
                      model_validator)
from pydantic_core import PydanticCustomError

from augment.core.registry import BACKENDS
from augment.core.schedulers import SCHEDULERS

DTYPES = ("float32", "float16", "bfloat16")
"""Weight / activation dtypes a backend may run in (``augment.core.devices`` maps them to torch)."""

Fraction = Annotated[float, Field(ge=0.0, le=1.0)]
_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")


class Strict(BaseModel):
    """Base of every config model: unknown keys are errors, values are validated on assignment."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class ConfigError(ValueError):
    """A config file that cannot be used; the message names the file and the field."""


def plain_name(value: str) -> str:
    """``value`` if it is a plain folder name (letters, digits, '.', '_', '-'), else ValueError."""
    if not _SAFE_NAME.match(value) or value in {".", ".."}:
        raise ValueError("must be a plain folder name: letters, digits, '.', '_', '-' "
                         "(no path separators), at most 100 characters")
    return value


def known(kind: str, values: list[str], allowed: tuple[str, ...]) -> list[str]:
    """``values`` if each is in ``allowed`` and none repeats, else ValueError naming them."""
    unknown = [v for v in values if v not in allowed]
    if unknown:
        raise ValueError(f"unknown {kind} {unknown}; allowed: {list(allowed)}")
    if len(set(values)) != len(values):
        raise ValueError(f"duplicate {kind} names in {values}")
    return values


class BackendSpec(Strict):
    """What every generator backend's settings (the job's ``model:`` section) hold; each backend
    extends it with its own fields (``augment.core.registry.BACKENDS`` names the model per backend).
    A backend that runs only some schedulers lists them in the class variable ``schedulers``.
    """

    schedulers: ClassVar[tuple[str, ...] | None] = None
    weight_fields: ClassVar[tuple[str, ...]] = ("path",)  # where weights come from (checked early)

    backend: str
    path: str | None = Field(
        None, description="Hub id or local folder of the weights; None = the embedded weights.")
    dtype: Literal[DTYPES] = "float32"
    device: str = Field("cpu", description="'cpu', 'cuda', 'cuda:N' or 'auto' (cuda if present).")

    @field_validator("device")
    @classmethod
    def _device(cls, value: str) -> str:
        if not re.fullmatch(r"cpu|auto|cuda(:\d+)?|mps", value):
            raise ValueError("must be 'cpu', 'auto', 'cuda', 'cuda:N' or 'mps'")
        return value


def backend_settings(backend: str, **fields) -> BackendSpec:
    """The settings model of ``backend`` (any registered one) filled with ``fields``."""
    return BACKENDS.get(backend).spec_model().model_validate({**fields, "backend": backend})


def backend_spec(modality: str, default: str):
    """A ``WrapValidator`` that validates a ``model:`` mapping with the settings model of the
    backend it names (``default`` when it names none), one of ``modality``'s backends."""

    def validate(value: Any, handler, info) -> BackendSpec:
        if isinstance(value, BackendSpec):
            return value
        if not isinstance(value, dict):
            raise PydanticCustomError("backend_spec", "expected a mapping of backend settings")
        name = value.get("backend", default)
        allowed = BACKENDS.names(modality=modality)
        if name not in allowed:
            raise PydanticCustomError("backend", "unknown backend {name}; allowed: {allowed}",
                                      {"name": repr(name), "allowed": allowed})
        return BACKENDS.get(name).spec_model().model_validate({**value, "backend": name})

    return WrapValidator(validate)


class SamplerSpec(Strict):
    """How the reverse diffusion is run (every modality)."""

    scheduler: Literal[SCHEDULERS] = "dpmsolver++"
    steps: int = Field(20, ge=1, le=1000)
    guidance: float = Field(3.0, ge=0.0, le=30.0, description="Classifier-free guidance; 1 = off.")
    eta: float = Field(0.0, ge=0.0, le=1.0, description="DDIM eta (0 = deterministic).")
    noise_temperature: float = Field(1.0, gt=0.0, le=2.0, description="Scale of the initial noise.")
    batch_size: int = Field(16, ge=1, le=1024)


class JobBase(Strict):
    """What every dataset job holds, whatever its modality: where it goes, how many samples, which
    seed, how they are sharded and split."""

    name: str = Field("dataset", description="Dataset folder name under the output folder.")
    num_samples: int = Field(64, ge=1, le=10_000_000)
    seed: int = Field(0, ge=0, lt=2**63)
    shard_size: int = Field(32, ge=1, le=100_000)
    val_fraction: Fraction = 0.1

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        return plain_name(value)

    @property
    def num_shards(self) -> int:
        return -(-self.num_samples // self.shard_size)

    @model_validator(mode="after")
    def _scheduler_supported(self) -> "JobBase":
        model, sampler = getattr(self, "model", None), getattr(self, "sampler", None)
        allowed = getattr(type(model), "schedulers", None)
        if allowed is not None and sampler is not None and sampler.scheduler not in allowed:
            raise ValueError(f"sampler.scheduler: backend {model.backend!r} samples only with "
                             f"{list(allowed)}, not {sampler.scheduler!r}")
        return self


def deep_merge(base: dict, update: dict) -> dict:
    """``base`` with ``update`` merged in; nested mappings merge key by key, other values replace."""
    out = dict(base)
    for key, value in update.items():
        out[key] = deep_merge(out[key], value) if isinstance(value, dict) and isinstance(
            out.get(key), dict) else value
    return out


def format_validation_error(error: ValidationError, source: str) -> str:
    """One line per problem: ``source: field.path: message`` (a check across fields names its
    fields in the message, which then follows ``source`` directly)."""
    lines = []
    for item in error.errors():
        field = ".".join(str(p) for p in item["loc"])
        message = item["msg"].removeprefix("Value error, ")
        if item["type"] == "extra_forbidden":
            message = "unknown key (check the spelling; extra keys are not allowed)"
        if not field and not re.match(r"^[\w.]+: ", message):
            field = "(top level)"
        lines.append(f"{source}: {field}: {message}" if field else f"{source}: {message}")
    return "\n".join(lines)


def validate(model: type[BaseModel], raw: Any, source: str) -> BaseModel:
    """``model.model_validate(raw)``, with errors as one ``ConfigError`` naming ``source``."""
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, source)) from exc


def read_yaml(path: str | Path) -> dict:
    """The mapping in a YAML file (an empty file is ``{}``); ``ConfigError`` naming the file."""
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
    return raw


def load_config(path: str | Path, model: type[BaseModel]) -> BaseModel:
    """Read a YAML file into ``model``; raise ``ConfigError`` naming the file and the fields."""
    return validate(model, read_yaml(path), str(path))
