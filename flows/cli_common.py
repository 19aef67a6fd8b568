"""What every ``synthmill`` command shares: one-line errors (tracebacks with ``--debug``), config
loading with ``--set`` overrides."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
import yaml
from pydantic import ValidationError

from augment.config.base import ConfigError, Strict, format_validation_error, load_config

STATE = {"debug": False}

SetOption = typer.Option(None, "--set", help="Override a config field: --set sampler.steps=10 "
                                             "(dotted path, YAML value). Repeatable.")


def fail(message: str) -> None:
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    raise typer.Exit(2)


def guarded(fn, *args, **kwargs):
    """Call ``fn``; turn expected failures into one line (``--debug`` keeps the traceback)."""
    try:
        return fn(*args, **kwargs)
    except (ConfigError, FileNotFoundError, FileExistsError, ValueError, RuntimeError,
            PermissionError) as exc:
        if STATE["debug"]:
            raise
        fail(str(exc))


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


def load_with_overrides(config: Optional[Path], model: type[Strict], overrides: list[str] | None) -> Strict:
    base = load_config(config, model) if config else model()
    return apply_overrides(base, overrides, str(config or "--set"))
