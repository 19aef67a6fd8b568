"""What every ``synthmill`` command shares: one-line errors (tracebacks with ``--debug``), config
loading with ``--set`` overrides, help labels a person reads."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Optional

import typer
import typer.core
import yaml
from pydantic import ValidationError

from augment.config.base import ConfigError, Strict, format_validation_error, load_config

STATE = {"debug": False}

SetOption = typer.Option(None, "--set", metavar="FIELD=VALUE",
                         help="Override a field of the command's config (dotted path, YAML value): "
                              "--set jobs.0.sampler.steps=10 in a run config, --set batch_size=32 "
                              "in evaluation settings. Repeatable.")


class ItemLabels(typer.core.TyperCommand):
    """A command whose help labels a list by its items' type (`datasets... <path>`, `--dataset
    <path>`) where Typer writes `<list[Path]>`."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        for param in self.params:
            typer_label = param.display_type_rich
            param.display_type_rich = lambda ctx, typer_label=typer_label: item_label(typer_label(ctx))


def item_label(label: str | None) -> str | None:
    """`<list[Path]>` -> `<path>`, `<list[str]>...` -> `<str>...`; any other label as it is."""
    found = re.fullmatch(r"<list\[(\w+)\]>(\.\.\.)?", label or "")
    return f"<{found.group(1).lower()}>{found.group(2) or ''}" if found else label


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
    """Return a copy of ``model`` with ``a.b.c=value`` overrides applied and re-validated.

    A path step into a list is an index (``jobs.0.seed=3``) or, for a list of named items, a name
    (``jobs.demo-shapes.seed=3``). Values are YAML (``--set layout.objects_per_image=[1,2]``).
    """
    if not overrides:
        return model
    data = model.model_dump(mode="json")
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"--set {item!r}: expected key=value, e.g. --set jobs.0.sampler.steps=10")
        *parents, leaf = key.split(".")
        node = data
        for depth, part in enumerate(parents):
            node = _child(node, part, ".".join(parents[:depth + 1]), item)
        if isinstance(node, list):
            node[_index(node, leaf, key, item)] = yaml.safe_load(value)
        else:
            node[leaf] = yaml.safe_load(value)
    try:
        return type(model).model_validate(data)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, "--set")) from exc


def _child(node, part: str, path: str, item: str):
    """The value at ``part`` below ``node`` (a mapping: created when missing; a list: by index or
    by the ``name`` of an element)."""
    if isinstance(node, list):
        return node[_index(node, part, path, item)]
    if not isinstance(node.get(part), (dict, list)):
        node[part] = {}
    return node[part]


def _index(items: list, part: str, path: str, item: str) -> int:
    if part.isdigit() and int(part) < len(items):
        return int(part)
    names = [x.get("name") for x in items if isinstance(x, dict)]
    if part in names:
        return names.index(part)
    raise ConfigError(f"--set {item!r}: {path} is a list of {len(items)}; give an index "
                      f"(0..{len(items) - 1}) or a name ({names})")


def load_with_overrides(config: Optional[Path], model: type[Strict], overrides: list[str] | None) -> Strict:
    base = load_config(config, model) if config else model()
    return apply_overrides(base, overrides, str(config or "--set"))


def existing_inputs(paths: dict[str, str | Path | None]) -> None:
    """Check a command's input paths before any flow starts (so a typo costs no server start-up
    and prints one line): each given path, a dataset series resolved to its ``latest``, must exist.
    ``paths`` maps what a path is (``dataset``, ``--reference``, ...) to it; None is skipped."""
    from augment.core.versions import resolve_dataset

    for what, path in paths.items():
        if path is not None and not resolve_dataset(path).exists():
            raise FileNotFoundError(f"{what}: {path} does not exist")


def lock_free(folder: Path) -> None:
    """FolderLockedError at once when another run holds ``folder``'s lock (the flow takes the
    lock itself; this only makes the refusal come before the flow starts)."""
    from augment.core.io import FolderLock

    if (folder / ".lock").exists():
        with FolderLock(folder):
            pass


def ready_to_generate(config, names: list[str] | None = None) -> None:
    """Before any flow starts: each job to generate (those in ``names``, or all) has its weights
    where the config says and its dataset folder free of another run's lock."""
    from augment.core.weights import check_job_weights

    for job in config.selected_jobs(names):
        check_job_weights(job)
        lock_free(Path(config.out) / job.name)


def prefect_server() -> str | None:
    """The Prefect server the user configured (``PREFECT_API_URL`` from the environment or the
    active profile), or None. One-off commands run as flows only when there is one: without it
    Prefect would start a temporary server (10-20 s) whose records end with the command."""
    from flows.runners import configured_server

    return configured_server()
