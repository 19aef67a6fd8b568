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
import queue
import threading
import time
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timezone
from functools import partial
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
from augment.core.stopping import check_stop, stoppable, watch_networks

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

    This thread samples batch after batch; a ``ShardWriter`` thread writes each finished batch's
    files and manifest rows meanwhile, so sampling never waits on files. A stop request
    (``augment.core.stopping``) ends the shard within a fraction of a denoising step with
    ``GenerationInterrupted``: batches not yet written are dropped and no manifest part is
    written, so the shard is generated again, identically, by the next run.

    Returns {"shard", "samples", "kept", "seconds" (wall), "model_seconds" (inside
    ``hooks.produce``: the backend's rendering and the verification; audio mixes its clips there
    too), "skipped"}.
    """
    root = Path(root)
    part = _part_path(root, shard)
    ids = shard_ids(job, shard)
    if part.exists():
        if progress:
            progress(len(ids))
        return {"shard": shard, "samples": len(ids), "kept": None, "seconds": 0.0,
                "model_seconds": 0.0, "skipped": True}
    with stoppable():
        check_stop(f"the start of shard {shard} of {job.name}")
        start = time.perf_counter()
        rows, model_seconds = _sample_shard(job, root, shard, ids, progress)
        atomic_write_bytes(part, _parquet_bytes(pd.DataFrame(rows)))  # last: the shard is done
    return {"shard": shard, "samples": len(rows), "kept": sum(r["kept"] for r in rows),
            "seconds": time.perf_counter() - start, "model_seconds": model_seconds,
            "skipped": False}


def _sample_shard(job: JobBase, root: Path, shard: int, ids: range,
                  progress: Callable[[int], None] | None) -> tuple[list[dict], float]:
    """Sample the shard's batches here while a ``ShardWriter`` writes them; (manifest rows in id
    order, seconds spent in ``hooks.produce``)."""
    hooks = hooks_of(job)
    backend = load_backend(job.model)
    watch_networks(backend)
    verifier = hooks.verifier(job)
    write = partial(_write_batch, job, root, shard, hooks, backend, job_fingerprint(job), progress)
    writer = ShardWriter(write, name=f"{job.name}-shard-{shard}-writer")
    model_seconds = 0.0
    try:
        for b in range(0, len(ids), job.sampler.batch_size):
            batch_ids = list(ids[b:b + job.sampler.batch_size])
            check_stop(f"sample {batch_ids[0]} of {job.name}")
            conditions = [hooks.condition(job, i) for i in batch_ids]
            noise_seeds = [sample_seeds(job.seed, i)[1] for i in batch_ids]
            t0 = time.perf_counter()
            stored, status, scores = hooks.produce(job, backend, verifier, conditions, noise_seeds)
            seconds = time.perf_counter() - t0
            model_seconds += seconds
            writer.put(Batch(batch_ids, conditions, noise_seeds, stored, status, scores,
                             seconds / len(batch_ids)))
        return writer.close(), model_seconds
    except BaseException:
        writer.discard()
        raise


@dataclass
class Batch:
    """A sampled batch on its way to the disk: ids, conditions, noise seeds, stored samples,
    status and verification scores per sample, and the model seconds per sample (the batch's
    model time shared evenly: the manifest's ``seconds``)."""

    ids: list[int]
    conditions: list
    noise_seeds: list[int]
    stored: np.ndarray
    status: list[str]
    scores: list
    seconds_per_sample: float


def _write_batch(job: JobBase, root: Path, shard: int, hooks: ModalityHooks, backend,
                 fingerprint: str, progress: Callable[[int], None] | None,
                 batch: Batch) -> list[dict]:
    """Write a batch's files (each atomically) and return its manifest rows."""
    rows = []
    for i, sid in enumerate(batch.ids):
        condition = batch.conditions[i]
        files = hooks.write_files(job, root, sample_stem(job, sid), condition, batch.stored[i])
        instances, verify = hooks.instances(job, condition, batch.scores[i])
        record = SampleRecord(
            id=sid, files=files, split=split_of(job.seed, sid, job.val_fraction),
            seed=job.seed, noise_seed=batch.noise_seeds[i], backend=job.model.backend,
            model=backend.model_id, weights_sha256=backend.weights, dtype=job.model.dtype,
            sampler=job.sampler, model_spec=job.model, caption=condition.caption,
            prompt=backend.prompt(condition, job.sampler), condition=condition.to_json(),
            instances=instances, verify_method=job.verify.resolved_method(job.model.backend),
            verify=verify, kept=hooks.is_kept(job, batch.status[i], instances),
            status=batch.status[i], seconds=batch.seconds_per_sample, config_hash=fingerprint,
            shard=shard)
        rows.append(record.to_row())
    if progress:
        progress(len(batch.ids))
    return rows


_CLOSE = object()


class ShardWriter:
    """Writes a shard's batches on a thread of its own, in order, while the next batch samples.

    ``put`` hands over a batch through a queue of ``depth`` batches (the sampler runs at most that
    far ahead of the disk: it waits only when writing is the slower side); ``close`` waits for the
    last one and returns every row, in order. An error on the writer thread is raised in the
    caller's thread at its next ``put`` or at ``close``; after it, nothing more is written.
    ``discard`` (on an error or a stop request in the caller) drops the batches not yet started and
    waits for the one being written, whose files are each written atomically: nothing partial is
    left.
    """

    def __init__(self, write: Callable[[object], list[dict]], depth: int = 2,
                 name: str = "shard-writer"):
        self._write = write
        self._queue: queue.Queue = queue.Queue(maxsize=depth)
        self._rows: list[dict] = []
        self._error: BaseException | None = None
        self._dropping = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while (item := self._queue.get()) is not _CLOSE:
            if self._error is None and not self._dropping.is_set():
                try:
                    self._rows += self._write(item)
                except BaseException as exc:  # handed to the caller's thread
                    self._error = exc

    def _raise_error(self) -> None:
        if self._error is not None:
            raise self._error

    def put(self, item) -> None:
        self._raise_error()
        self._queue.put(item)  # the thread keeps taking items, even after an error

    def close(self) -> list[dict]:
        self._end_thread()
        self._raise_error()
        return self._rows

    def discard(self) -> None:
        self._dropping.set()
        self._end_thread()

    def _end_thread(self) -> None:
        self._queue.put(_CLOSE)  # after the batches queued before it
        self._thread.join()


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


def finalize_dataset(job: JobBase, root: str | Path, seconds: float | None = None,
                     model_seconds: float | None = None) -> dict:
    """Merge the manifest, run the exporters, write dataset.json; returns the run summary
    (``summarize``; ``seconds``: the run's wall time, ``model_seconds``: the part of it its shards
    spent in model calls)."""
    root = Path(root)
    manifest = read_manifest_parts(job, root)
    # A writer killed mid-file (an interrupted earlier run, or a lost Dask worker of this one,
    # whose shard then ran again on another) left its temporary file. Every shard is done and the
    # folder is locked by this run, so no temporary file here belongs to a live writer.
    removed = remove_stale_temp_files(root)
    if removed:
        log.info("removed %d partial files left by killed writers", removed)
    atomic_write_bytes(root / "manifest.parquet", _parquet_bytes(manifest))
    categories = hooks_of(job).categories(job)
    labels = label_kind(job)
    for exporter in EXPORTERS.select(modality=job.modality):
        if labels in exporter.labels:
            exporter.write(root, manifest, categories, labels=labels)
    summary = summarize(manifest, seconds, model_seconds)
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


def summarize(manifest: pd.DataFrame, seconds: float | None = None,
              model_seconds: float | None = None) -> dict:
    """Counts per class (kept samples), kept / dropped / failed, and throughput: with the run's
    wall ``seconds`` and the ``model_seconds`` its shards spent in model calls (rendering and
    verification), ``outside_model_share`` is the share of the wall time spent on anything else
    (orchestration, files, exporters; with shards in parallel it can be below 0)."""
    kept = manifest[manifest["kept"]]
    per_class = Counter(i["category"] for text in kept["instances"] for i in json.loads(text))
    counts = {"samples": int(len(manifest)), "kept": int(len(kept)),
              "dropped": int((~manifest["kept"] & (manifest["status"] != "failed")).sum()),
              "failed": int((manifest["status"] == "failed").sum()),
              "instances_per_class": dict(sorted(per_class.items()))}
    gen_seconds = float(manifest["seconds"].sum())
    outside = (round(1 - model_seconds / seconds, 4)
               if seconds and model_seconds is not None else None)
    return {"counts": counts, "generation_seconds": round(gen_seconds, 2),
            "wall_seconds": round(seconds, 2) if seconds else None,
            "samples_per_second": round(len(manifest) / seconds, 3) if seconds else None,
            "model_seconds": round(model_seconds, 2) if model_seconds is not None else None,
            "outside_model_share": outside}


def samples_done(job: JobBase, root: str | Path) -> int:
    """How many of ``job``'s samples are finished in ``root``: those of shards whose manifest part
    is written (a rerun keeps them and generates the rest)."""
    return job.num_samples - sum(len(shard_ids(job, s)) for s in pending_shards(job, Path(root)))


def generate_dataset(job: JobBase, out: str | Path,
                     progress: Callable[[int], None] | None = None,
                     version: str | None = None) -> tuple[Path, dict]:
    """Library entry point without Prefect: lock, generate pending shards, finalize."""
    root = dataset_dir(job, out, version)
    start = time.perf_counter()
    with FolderLock(root):
        prepare_dataset(job, out, version)
        model_seconds = sum(generate_shard(job, root, shard, progress)["model_seconds"]
                            for shard in range(job.num_shards))
        summary = finalize_dataset(job, root, time.perf_counter() - start, model_seconds)
    return root, summary
