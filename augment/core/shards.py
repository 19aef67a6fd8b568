"""Making a dataset, whatever its modality: conditions first, outputs second, verification, then
the exporters. The modality fills in the parts that know what a sample is (``ModalityHooks``).

The work is split into shards of consecutive sample ids. A shard writes its samples' files (each
atomically), then its manifest part last: a shard is done exactly when its part exists, so a killed
run resumes shard by shard, and ids can never be duplicated. ``finalize_dataset`` merges the parts
into ``manifest.parquet``, runs the modality's exporters (``EXPORTERS``) and writes
``dataset.json``.
"""

from __future__ import annotations

import io
import json
import logging
import time
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Protocol

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from augment import __version__
from augment.config.base import JobBase, SamplerSpec
from augment.core.backends import load_backend
from augment.core.io import (FolderLock, atomic_write_bytes, atomic_write_json,
                             remove_stale_temp_files, sha256_text)
from augment.core.records import SampleRecord
from augment.core.registry import BACKENDS, EXPORTERS, MODALITIES
from augment.core.seeds import sample_seeds, split_of

log = logging.getLogger(__name__)

STATE_DIR = ".synthmill"
PARTS_DIR = f"{STATE_DIR}/parts"
USAGE_NOTE = ("Synthetic data made by synthmill. Labels are exact by construction for the "
              "condition; 'kept' marks samples whose pixels an independent checker agreed with. "
              "Check the evaluation report before training on it.")

LABELS_NOTE = {
    "masks": "boxes and instance masks both follow the condition the image was rendered from",
    "boxes": "boxes only: the backend was conditioned on boxes, so masks/ hold the layout regions "
             "the boxes came from, not object outlines; COCO has no segmentation and YOLO no "
             "segment task",
    "events": "event onsets, offsets and classes follow the condition the audio was rendered from",
}


class ModalityHooks(Protocol):
    """What a modality tells the shard machinery (``augment.image.generation.IMAGE`` for images).

    ``roles``: the file columns of a manifest row; ``sampler_model``: the job's sampler settings.
    """

    roles: tuple[str, ...]
    sampler_model: type[SamplerSpec]

    def condition(self, job, index: int):
        """The condition of sample ``index`` (drawn from ``(job.seed, index)``): has ``caption``
        and ``to_json()``."""

    def condition_from_json(self, text: str):
        """The condition a manifest row's ``layout`` column holds."""

    def verifier(self, job) -> Callable | None:
        """The job's verification (its inputs are the modality's business), or None for none."""

    def produce(self, job, backend, verifier, conditions: list, seeds: list[int]
                ) -> tuple[np.ndarray, list[str], list]:
        """Render and verify a batch: (stored samples, e.g. uint8 images; status per sample, "ok",
        "retried_fp32" or "failed"; verification scores per sample, None without a verifier).
        Built on ``augment.core.backends.render_guarded``."""

    def encode(self, stored, condition) -> tuple[bytes, str]:
        """One stored sample as the bytes of its main file, and that file's suffix (".png")."""

    def write_files(self, job, root: Path, stem: str, condition, stored) -> dict[str, str]:
        """Write one sample's files atomically; returns role -> path relative to ``root``."""

    def instances(self, job, condition, scores) -> tuple[list[dict], dict[str, float | None]]:
        """Per-instance records of a sample (category, attributes, scores) and the minimum of each
        verification score over them."""

    def is_kept(self, job, status: str, instances: list[dict]) -> bool:
        """Whether a sample passed verification."""

    def categories(self, job) -> list[str]:
        """Category names of the dataset; id ``i + 1`` is ``categories[i]``."""


def hooks_of(job: JobBase) -> ModalityHooks:
    return MODALITIES.get(job.modality).load_hooks()


def label_kind(job: JobBase) -> str:
    """What the job's labels follow: "masks", "boxes" or "events" (its backend's entry says)."""
    return BACKENDS.get(job.model.backend).labels


def job_fingerprint(job: JobBase) -> str:
    """Hash of everything that determines the dataset's content (16 hex digits)."""
    return sha256_text(job.model_dump_json())[:16]


def dataset_dir(job: JobBase, out: str | Path, version: str | None = None) -> Path:
    """``out/<job name>``, or ``out/<job name>/<version>`` for a version of a series
    (``augment.core.versions``)."""
    root = Path(out) / job.name
    return root / version if version else root


def prepare_dataset(job: JobBase, out: str | Path, version: str | None = None) -> Path:
    """Create (or re-open for resuming) the dataset folder; refuse one made by another config."""
    root = dataset_dir(job, out, version)
    state = root / STATE_DIR / "job.json"
    if state.exists():
        previous = json.loads(state.read_text())
        if previous.get("fingerprint") != job_fingerprint(job):
            raise FileExistsError(
                f"{root} holds a dataset made with a different config "
                f"(fingerprint {previous.get('fingerprint')}, this config {job_fingerprint(job)}); "
                "choose another job name or --out, or delete that folder")
    elif root.exists() and any(p.name != ".lock" for p in root.iterdir()):
        raise FileExistsError(f"{root} exists and is not a synthmill dataset folder; "
                              "choose another job name or --out")
    removed = remove_stale_temp_files(root) if root.exists() else 0
    if removed:
        log.info("removed %d partial files left by an interrupted run", removed)
    atomic_write_json(state, {"fingerprint": job_fingerprint(job),
                              "job": job.model_dump(mode="json")})
    return root


def shard_ids(job: JobBase, shard: int) -> range:
    start = shard * job.shard_size
    return range(start, min(start + job.shard_size, job.num_samples))


def _part_path(root: Path, shard: int) -> Path:
    return root / PARTS_DIR / f"shard-{shard:06d}.parquet"


def pending_shards(job: JobBase, root: Path) -> list[int]:
    """Shards whose manifest part is not written yet (all of them for a new dataset)."""
    return [s for s in range(job.num_shards) if not _part_path(root, s).exists()]


def sample_stem(job: JobBase, sample_id: int) -> str:
    """File name stem of a sample: its id, zero-padded to at least six digits."""
    return f"{sample_id:0{max(6, len(str(job.num_samples - 1)))}d}"


def generate_shard(job: JobBase, root: str | Path, shard: int,
                   progress: Callable[[int], None] | None = None) -> dict:
    """Generate shard ``shard`` of ``job`` into ``root`` (no-op when already done).

    Returns {"shard", "samples", "kept", "seconds", "skipped"}.
    """
    root = Path(root)
    part = _part_path(root, shard)
    ids = shard_ids(job, shard)
    if part.exists():
        if progress:
            progress(len(ids))
        return {"shard": shard, "samples": len(ids), "kept": None, "seconds": 0.0, "skipped": True}
    hooks = hooks_of(job)
    backend = load_backend(job.model)
    verifier = hooks.verifier(job)
    fingerprint = job_fingerprint(job)
    rows = []
    start = time.perf_counter()
    for b in range(0, len(ids), job.sampler.batch_size):
        batch_ids = list(ids[b:b + job.sampler.batch_size])
        t0 = time.perf_counter()
        conditions = [hooks.condition(job, i) for i in batch_ids]
        noise_seeds = [sample_seeds(job.seed, i)[1] for i in batch_ids]
        stored, status, scores = hooks.produce(job, backend, verifier, conditions, noise_seeds)
        per_sample = (time.perf_counter() - t0) / len(batch_ids)
        for i, sid in enumerate(batch_ids):
            files = hooks.write_files(job, root, sample_stem(job, sid), conditions[i], stored[i])
            instances, verify = hooks.instances(job, conditions[i], scores[i])
            record = SampleRecord(
                id=sid, files=files, split=split_of(job.seed, sid, job.val_fraction),
                seed=job.seed, noise_seed=noise_seeds[i], backend=job.model.backend,
                model=backend.model_id, weights_sha256=backend.weights, dtype=job.model.dtype,
                sampler=job.sampler, model_spec=job.model, caption=conditions[i].caption,
                prompt=backend.prompt(conditions[i], job.sampler),
                condition=conditions[i].to_json(), instances=instances,
                verify_method=job.verify.resolved_method(job.model.backend), verify=verify,
                kept=hooks.is_kept(job, status[i], instances), status=status[i],
                seconds=per_sample, config_hash=fingerprint, shard=shard)
            rows.append(record.to_row())
        if progress:
            progress(len(batch_ids))
    atomic_write_bytes(part, _parquet_bytes(pd.DataFrame(rows)))  # last: marks the shard as done
    kept = sum(r["kept"] for r in rows)
    return {"shard": shard, "samples": len(rows), "kept": kept,
            "seconds": time.perf_counter() - start, "skipped": False}


def _parquet_bytes(frame: pd.DataFrame) -> bytes:
    buf = io.BytesIO()
    pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), buf)
    return buf.getvalue()


def read_manifest_parts(job: JobBase, root: Path) -> pd.DataFrame:
    """All shard parts, sorted by id; checks that every shard is there and ids are unique."""
    missing = pending_shards(job, root)
    if missing:
        raise RuntimeError(f"{root}: shards {missing[:10]} are not generated yet; run generation "
                           "again with the same config to complete them")
    frames = [pd.read_parquet(_part_path(root, s)) for s in range(job.num_shards)]
    manifest = pd.concat(frames, ignore_index=True).sort_values("id", ignore_index=True)
    if manifest["id"].duplicated().any() or len(manifest) != job.num_samples:
        raise RuntimeError(f"{root}: manifest parts hold {len(manifest)} rows for "
                           f"{job.num_samples} samples (duplicates or gaps); delete the folder")
    return manifest


def finalize_dataset(job: JobBase, root: str | Path, seconds: float | None = None) -> dict:
    """Merge the manifest, run the exporters, write dataset.json; returns the run summary."""
    root = Path(root)
    manifest = read_manifest_parts(job, root)
    atomic_write_bytes(root / "manifest.parquet", _parquet_bytes(manifest))
    categories = hooks_of(job).categories(job)
    labels = label_kind(job)
    for exporter in EXPORTERS.select(modality=job.modality):
        if labels in exporter.labels:
            exporter.write(root, manifest, categories, labels=labels)
    summary = summarize(manifest, seconds)
    atomic_write_json(root / "dataset.json", {
        "name": job.name, "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "synthmill_version": __version__, "modality": job.modality,
        "config": job.model_dump(mode="json"), "config_hash": job_fingerprint(job),
        "model": {"backend": job.model.backend, "id": manifest["model"].iloc[0],
                  "weights_sha256": manifest["weights_sha256"].iloc[0]},
        "categories": categories, "label_map": {i + 1: c for i, c in enumerate(categories)},
        "labels": labels, "labels_note": LABELS_NOTE[labels],
        "counts": summary["counts"], "licence": USAGE_NOTE,
    })
    return summary


def summarize(manifest: pd.DataFrame, seconds: float | None = None) -> dict:
    """Counts per class (kept samples), kept / dropped / failed, and throughput."""
    kept = manifest[manifest["kept"]]
    per_class = Counter(i["category"] for text in kept["instances"] for i in json.loads(text))
    counts = {"samples": int(len(manifest)), "kept": int(len(kept)),
              "dropped": int((~manifest["kept"] & (manifest["status"] != "failed")).sum()),
              "failed": int((manifest["status"] == "failed").sum()),
              "instances_per_class": dict(sorted(per_class.items()))}
    gen_seconds = float(manifest["seconds"].sum())
    return {"counts": counts, "generation_seconds": round(gen_seconds, 2),
            "wall_seconds": round(seconds, 2) if seconds else None,
            "samples_per_second": round(len(manifest) / seconds, 3) if seconds else None}


def generate_dataset(job: JobBase, out: str | Path,
                     progress: Callable[[int], None] | None = None,
                     version: str | None = None) -> tuple[Path, dict]:
    """Library entry point without Prefect: lock, generate pending shards, finalize."""
    root = dataset_dir(job, out, version)
    start = time.perf_counter()
    with FolderLock(root):
        prepare_dataset(job, out, version)
        for shard in range(job.num_shards):
            generate_shard(job, root, shard, progress)
        summary = finalize_dataset(job, root, time.perf_counter() - start)
    return root, summary
