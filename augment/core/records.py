"""One manifest row per sample, as a typed record, and ``replay``: regenerate a sample from its row.

A ``SampleRecord`` holds everything that made its sample: the condition (JSON), the noise seed, the
backend's full settings and the sampler's, the weights' hash; and what was found about it: the
verification scores, whether it was kept, its status, its timing. ``to_row`` flattens it into the
manifest's columns (files by role, ``layout`` for the condition JSON, ``verify_min_<score>``);
``SampleRecord.from_row`` reads one back.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Mapping

import numpy as np
from pydantic import BaseModel, ConfigDict, SerializeAsAny

from augment.config.base import BackendSpec, SamplerSpec
from augment.core.backends import load_backend
from augment.core.io import atomic_write_bytes
from augment.core.registry import BACKENDS, MODALITIES

SAMPLER_COLUMNS = ("scheduler", "steps", "guidance", "eta", "noise_temperature")
"""Sampler settings that get a column of their own (all of them are in ``sampler_spec``)."""


class SampleRecord(BaseModel):
    """What made one sample, and what was found about it (one manifest row)."""

    model_config = ConfigDict(extra="forbid", arbitrary_types_allowed=True)

    id: int
    files: dict[str, str]  # role (e.g. "image", "instance_mask") -> path in the dataset folder
    split: str
    seed: int  # the run's seed; the condition is drawn from (seed, id)
    noise_seed: int
    backend: str
    model: str  # the weights' location as loaded (a folder or hub id)
    weights_sha256: str
    dtype: str
    sampler: SerializeAsAny[SamplerSpec]
    model_spec: SerializeAsAny[BackendSpec]
    caption: str | None
    prompt: str | None
    condition: str  # JSON of the condition (an image layout, ...)
    instances: list[dict]  # per instance: category, attributes, verification scores
    verify_method: str
    verify: dict[str, float | None]  # per score name, its minimum over the instances
    kept: bool
    status: str  # "ok", "retried_fp32" or "failed"
    seconds: float
    config_hash: str
    shard: int

    @property
    def modality(self) -> str:
        return BACKENDS.get(self.backend).modality

    def to_row(self) -> dict[str, Any]:
        """The manifest row: flat columns in a fixed order."""
        return {
            "id": self.id, **self.files, "split": self.split, "seed": self.seed,
            "noise_seed": self.noise_seed, "backend": self.backend, "model": self.model,
            "weights_sha256": self.weights_sha256, "dtype": self.dtype,
            **{c: getattr(self.sampler, c) for c in SAMPLER_COLUMNS},
            "caption": self.caption, "prompt": self.prompt, "layout": self.condition,
            "instances": json.dumps(self.instances), "num_instances": len(self.instances),
            "verify_method": self.verify_method,
            **{f"verify_min_{name}": score for name, score in self.verify.items()},
            "kept": self.kept, "status": self.status, "seconds": self.seconds,
            "config_hash": self.config_hash, "shard": self.shard,
            "model_spec": self.model_spec.model_dump_json(),
            "sampler_spec": self.sampler.model_dump_json(),
        }

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> "SampleRecord":
        """The record of a manifest row (a dict or a pandas row); missing values become None."""
        row = {k: _plain(v) for k, v in dict(row).items()}
        entry = BACKENDS.get(row["backend"])
        hooks = MODALITIES.get(entry.modality).load_hooks()
        return cls(
            id=row["id"], files={role: row[role] for role in hooks.roles}, split=row["split"],
            seed=row["seed"], noise_seed=row["noise_seed"], backend=row["backend"],
            model=row["model"], weights_sha256=row["weights_sha256"], dtype=row["dtype"],
            sampler=hooks.sampler_model.model_validate_json(row["sampler_spec"]),
            model_spec=entry.spec_model().model_validate_json(row["model_spec"]),
            caption=row["caption"], prompt=row["prompt"], condition=row["layout"],
            instances=json.loads(row["instances"]), verify_method=row["verify_method"],
            verify={k.removeprefix("verify_min_"): v for k, v in row.items()
                    if k.startswith("verify_min_")},
            kept=row["kept"], status=row["status"], seconds=row["seconds"],
            config_hash=row["config_hash"], shard=row["shard"])


def _plain(value: Any) -> Any:
    """numpy scalars -> Python; NaN (pandas' missing float) -> None."""
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


def replay_file(record: SampleRecord | Mapping[str, Any], path: str | Path,
                device: str | None = None) -> Path:
    """``replay`` the sample and write it as its dataset stores it (PNG, WAV, ...) to ``path``,
    whose suffix must be that format's."""
    if not isinstance(record, SampleRecord):
        record = SampleRecord.from_row(record)
    hooks = MODALITIES.get(record.modality).load_hooks()
    data, suffix = hooks.encode(replay(record, device), hooks.condition_from_json(record.condition))
    if Path(path).suffix.lower() != suffix:
        raise ValueError(f"{path}: a {record.modality} sample is written as {suffix}; "
                         f"name the file ...{suffix}")
    return atomic_write_bytes(path, data)


def replay(record: SampleRecord | Mapping[str, Any], device: str | None = None) -> np.ndarray:
    """Regenerate one sample from its manifest row alone, as the dataset stores it (images: uint8
    (H, W, 3); audio: int16 (N,)). On the same hardware and dtype it equals the stored sample.

    The backend is loaded from the row's settings (``device`` overrides where it runs) and must have
    the weights the row names: other weights raise ``ValueError`` instead of making another sample.
    """
    if not isinstance(record, SampleRecord):
        record = SampleRecord.from_row(record)
    spec = record.model_spec if device is None else record.model_spec.model_copy(
        update={"device": device})
    backend = load_backend(spec)
    if backend.weights != record.weights_sha256:
        raise ValueError(f"sample {record.id} was made with weights {record.weights_sha256}, but "
                         f"{backend.model_id} has weights {backend.weights}: it cannot be replayed")
    hooks = MODALITIES.get(record.modality).load_hooks()
    condition = hooks.condition_from_json(record.condition)
    stored, _, _ = hooks.produce(record, backend, None, [condition], [record.noise_seed])
    return stored[0]
