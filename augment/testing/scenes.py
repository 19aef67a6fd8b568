"""Real procedural shapes-world datasets for tests and benchmarks: a synthmill dataset folder of
``n`` scenes, generated in a fraction of a second with no model and no verification."""

from __future__ import annotations

from pathlib import Path

from augment.config import ImageJob, VerifySpec
from augment.config.image import ShapesWorldSpec
from augment.core.shards import generate_dataset


def scenes_dataset(out: str | Path, name: str, n: int, seed: int,
                   version: str | None = None) -> Path:
    """The folder ``out/<name>`` (``/<version>``) of ``n`` shapes-world scenes drawn from ``seed``."""
    job = ImageJob(name=name, num_samples=n, seed=seed, shard_size=n,
                   model=ShapesWorldSpec(backend="shapes-world"), verify=VerifySpec(enabled=False))
    return generate_dataset(job, out, version=version)[0]
