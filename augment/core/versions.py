"""Versioned datasets: a series folder ``<out>/<name>/`` that holds one folder per run
(``v0001``, ``v0002``, ...) and a ``latest`` symlink to the newest version that finished.

A scheduled refresh writes a new version and never touches the last good one; ``latest`` moves
(atomically: a new symlink renamed over the old one) only after the run's dataset is finalised, so
a failed or killed run leaves it where it was. The next run resumes an unfinished newest version
made by the same config, and otherwise opens the next number. Version ``n`` of a job draws its
samples from seed ``job.seed + n - 1`` unless asked to keep the seed (``reseed=False``), so each
refresh is new data and version 1 equals the unversioned dataset.

Readers take the series folder and resolve ``latest`` (``resolve_dataset``).
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

from augment.config.base import JobBase

LATEST = "latest"
_VERSION = re.compile(r"v(\d{4,})")


def version_name(number: int) -> str:
    return f"v{number:04d}"


def versions(series: str | Path) -> list[str]:
    """The version folders of ``series``, oldest first."""
    series = Path(series)
    if not series.is_dir():
        return []
    found = [p.name for p in series.iterdir() if p.is_dir() and not p.is_symlink()
             and _VERSION.fullmatch(p.name)]
    return sorted(found, key=lambda name: int(name[1:]))


def is_finished(folder: str | Path) -> bool:
    """Whether ``folder`` holds a finalised dataset (dataset.json is its last write)."""
    return (Path(folder) / "dataset.json").is_file()


def job_for_version(job: JobBase, number: int, reseed: bool = True) -> JobBase:
    """``job`` as version ``number`` makes it: seed + number - 1 when ``reseed``."""
    if not reseed or number == 1:
        return job
    return job.model_copy(update={"seed": job.seed + number - 1})


def open_version(job: JobBase, out: str | Path, reseed: bool = True) -> tuple[str, JobBase]:
    """The version the next run of ``job`` writes under ``<out>/<job.name>/`` and the job as it
    makes it: the newest version if it is unfinished and was begun by this same job (a killed run,
    resumed), else the next number."""
    from augment.core.shards import STATE_DIR, job_fingerprint

    series = Path(out) / job.name
    if (series / "dataset.json").exists():
        raise FileExistsError(f"{series} holds an unversioned dataset; a scheduled (versioned) "
                              "run needs its own folder: choose another job name or out")
    names = versions(series)
    if names:
        number = int(names[-1][1:])
        newest = series / names[-1]
        versioned = job_for_version(job, number, reseed)
        state = newest / STATE_DIR / "job.json"
        if not is_finished(newest) and state.exists():
            if json.loads(state.read_text()).get("fingerprint") == job_fingerprint(versioned):
                return names[-1], versioned
        number += 1
    else:
        number = 1
    return version_name(number), job_for_version(job, number, reseed)


def promote(series: str | Path, version: str) -> Path:
    """Point ``series/latest`` at ``version`` (a finished dataset) atomically; returns the link."""
    series = Path(series)
    if not is_finished(series / version):
        raise RuntimeError(f"{series / version} is not a finished dataset; latest stays put")
    link = series / LATEST
    tmp = series / f".{LATEST}.{os.getpid()}.tmp"
    tmp.unlink(missing_ok=True)
    os.symlink(version, tmp, target_is_directory=True)
    os.replace(tmp, link)
    return link


def latest(series: str | Path) -> str | None:
    """The version ``series/latest`` points at (None when there is none)."""
    link = Path(series) / LATEST
    return os.readlink(link) if link.is_symlink() else None


def resolve_dataset(path: str | Path, datasets_dir: str | Path = "datasets") -> Path:
    """The dataset folder ``path`` means: itself when it is a dataset, the version its ``latest``
    points at when it is a series folder, or ``datasets_dir/path`` for a bare name that is not a
    folder here. Other paths come back as given (their reader says what is wrong)."""
    path = Path(path)
    if not path.exists() and len(path.parts) == 1 and (Path(datasets_dir) / path).exists():
        path = Path(datasets_dir) / path
    if path.is_dir() and not (path / "dataset.json").exists():
        if (path / LATEST).is_symlink():
            target = path / latest(path)
            if not is_finished(target):
                raise FileNotFoundError(f"{path / LATEST} points at {target}, which is not a "
                                        "finished dataset")
            return target
        if versions(path):
            raise FileNotFoundError(f"{path} has versions {versions(path)} but no finished one "
                                    f"({LATEST} is missing): no run of it has succeeded yet")
    return path


def dataset_label(root: str | Path) -> str:
    """How reports name a dataset folder: ``<series>@vNNNN`` for a version folder (``latest``
    resolved), else the folder's name."""
    root = Path(root)
    if root.name == LATEST and root.is_symlink():
        root = root.parent / os.readlink(root)
    if _VERSION.fullmatch(root.name) and root.parent.name:
        return f"{root.parent.name}@{root.name}"
    return root.name
