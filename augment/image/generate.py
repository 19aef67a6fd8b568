"""Making a labeled image dataset: layouts first, pixels second, verification, then the writers.

The work is split into shards of consecutive sample ids. A shard writes its images and masks
(each atomically), then its manifest part last: a shard is done exactly when its part exists, so
a killed run resumes shard by shard, and ids can never be duplicated. ``finalize_dataset`` merges
the parts into ``manifest.parquet`` and writes COCO, YOLO and ``dataset.json``.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import time
from collections import Counter
from datetime import datetime, timezone
from functools import partial
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from augment import __version__
from augment.image.backends import label_kind, load_backend
from augment.config import SD_BACKENDS, ImageJob
from augment.core.devices import resolve_device
from augment.core.io import FolderLock, atomic_save_png, atomic_write_bytes, atomic_write_json, remove_stale_temp_files
from augment.image.layouts import Layout, layout_categories, sample_layout, sample_seeds
from augment.image.prompts import background_prompt, instance_prompt, scene_prompt
from augment.image.writers import write_coco, write_yolo

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
}


def job_fingerprint(job: ImageJob) -> str:
    """Hash of everything that determines the dataset's content (16 hex digits)."""
    return hashlib.sha256(job.model_dump_json().encode()).hexdigest()[:16]


def dataset_dir(job: ImageJob, out: str | Path) -> Path:
    return Path(out) / job.name


def prepare_dataset(job: ImageJob, out: str | Path) -> Path:
    """Create (or re-open for resuming) the dataset folder; refuse one made by another config."""
    root = dataset_dir(job, out)
    state = root / STATE_DIR / "job.json"
    if state.exists():
        previous = json.loads(state.read_text())
        if previous.get("fingerprint") != job_fingerprint(job):
            raise FileExistsError(
                f"{root} holds a dataset made with a different config "
                f"(fingerprint {previous.get('fingerprint')}, this config {job_fingerprint(job)}); "
                "choose another image.name or --out, or delete that folder")
    elif root.exists() and any(p.name != ".lock" for p in root.iterdir()):
        raise FileExistsError(f"{root} exists and is not a synthmill dataset folder; "
                              "choose another image.name or --out")
    removed = remove_stale_temp_files(root) if root.exists() else 0
    if removed:
        log.info("removed %d partial files left by an interrupted run", removed)
    atomic_write_json(state, {"fingerprint": job_fingerprint(job),
                              "job": job.model_dump(mode="json")})
    return root


def shard_ids(job: ImageJob, shard: int) -> range:
    start = shard * job.shard_size
    return range(start, min(start + job.shard_size, job.num_samples))


def _part_path(root: Path, shard: int) -> Path:
    return root / PARTS_DIR / f"shard-{shard:06d}.parquet"


def pending_shards(job: ImageJob, root: Path) -> list[int]:
    """Shards whose manifest part is not written yet (all of them for a new dataset)."""
    return [s for s in range(job.num_shards) if not _part_path(root, s).exists()]


def _stem(job: ImageJob, sample_id: int) -> str:
    return f"{sample_id:0{max(6, len(str(job.num_samples - 1)))}d}"


def split_of(seed: int, sample_id: int, val_fraction: float) -> str:
    """Deterministic train/val assignment of one sample, independent of shard size."""
    u = np.random.default_rng(np.random.SeedSequence([seed, sample_id, 1])).random()
    return "val" if u < val_fraction else "train"


def render_guarded(backend, layouts: list[Layout], sampler, seeds: list[int]) -> tuple[np.ndarray, list[str]]:
    """Render a batch; samples with NaN/inf (e.g. fp16 overflow) are retried once in fp32.

    Returns (images (B, H, W, 3) float in [0, 1], status per sample: "ok", "retried_fp32" or
    "failed"; failed images are zeros).
    """
    images = backend.render(layouts, sampler, seeds)
    bad = ~np.isfinite(images).reshape(len(images), -1).all(axis=1)
    status = ["ok"] * len(images)
    if bad.any():
        idx = np.flatnonzero(bad)
        log.warning("non-finite output for samples %s; retrying them in float32", idx.tolist())
        retry = backend.render([layouts[i] for i in idx], sampler, [seeds[i] for i in idx],
                               force_fp32=True)
        for j, i in enumerate(idx):
            if np.isfinite(retry[j]).all():
                images[i], status[i] = retry[j], "retried_fp32"
            else:
                images[i], status[i] = 0.0, "failed"
    return images, status


def _verify(checker, images: np.ndarray, layouts: list[Layout]) -> list[list[dict]]:
    """Per-instance checker scores for a batch (uint8 images (B, H, W, 3))."""
    from augment.image.checker import predict, score_instances

    semantic, colour = predict(checker, images)
    return [score_instances(semantic[i], colour[i], layout) for i, layout in enumerate(layouts)]


SCORE_KEYS = {"checker": "verify_iou", "clip": "verify_clip"}


def load_verifier(job: ImageJob) -> Callable[[np.ndarray, list[Layout]], list[list[dict]]] | None:
    """``(uint8 images (B, H, W, 3), layouts) -> per-instance score dicts`` for the job's
    verification method, or None when it is "none"."""
    method = job.verify.resolved_method(job.model.backend)
    if method == "none":
        return None
    if method == "checker":
        return partial(_verify, _load_checker())
    from augment.image.verify_clip import crop_scores, load_clip

    clip = load_clip(job.verify.clip_model, job.verify.clip_checkpoint,
                     resolve_device(job.model.device))
    return partial(crop_scores, clip, categories=layout_categories(job.layout),
                   margin=job.verify.clip_margin)


def _instances_record(layout: Layout, scores: list[dict] | None) -> list[dict]:
    out = []
    for k, inst in enumerate(layout.instances):
        score = scores[k] if scores else {}
        colour, source = inst.colour, "condition" if inst.colour else None
        if colour is None and score.get("colour_pred"):
            colour, source = score["colour_pred"], "checker"
        record = {"category": inst.category, "category_id": inst.category_id,
                  "colour": colour, "colour_source": source,
                  "verify_iou": score.get("verify_iou"), "colour_ok": score.get("colour_ok")}
        if "verify_clip" in score:
            record.update(verify_clip=score["verify_clip"], clip_pred=score["clip_pred"])
        out.append(record)
    return out


def _is_kept(job: ImageJob, status: str, instances: list[dict]) -> bool:
    if status == "failed":
        return False
    method = job.verify.resolved_method(job.model.backend)
    if method == "none":
        return True
    key = SCORE_KEYS[method]
    return all((i.get(key) is not None and i[key] >= job.verify.min_score)
               and i["colour_ok"] is not False for i in instances)


def prompt_record(job: ImageJob, layout: Layout) -> str | None:
    """The text the backend was prompted with (None for the embedded backends); inpaint-paste's
    stages are joined with " | ", background first."""
    backend, sampler = job.model.backend, job.sampler
    if backend not in SD_BACKENDS:
        return None
    if backend != "inpaint-paste":
        return scene_prompt(layout, sampler)
    stages = [f"(image {Path(layout.extra['background_image']).name})"
              if "background_image" in layout.extra else background_prompt(layout, sampler)]
    stages += [instance_prompt(inst, sampler) for k, inst in enumerate(layout.instances)
               if (layout.instance_map == k + 1).any()]
    return " | ".join(stages)


def generate_shard(job: ImageJob, root: str | Path, shard: int,
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
    backend = load_backend(job.model)
    verifier = load_verifier(job)
    fingerprint = job_fingerprint(job)
    rows = []
    start = time.perf_counter()
    for b in range(0, len(ids), job.sampler.batch_size):
        batch_ids = list(ids[b:b + job.sampler.batch_size])
        t0 = time.perf_counter()
        layouts = [sample_layout(job.layout, job.seed, i) for i in batch_ids]
        noise_seeds = [sample_seeds(job.seed, i)[1] for i in batch_ids]
        images, status = render_guarded(backend, layouts, job.sampler, noise_seeds)
        images = np.clip(np.rint(images * 255), 0, 255).astype(np.uint8)
        scores = verifier(images, layouts) if verifier else [None] * len(layouts)
        per_sample = (time.perf_counter() - t0) / len(batch_ids)
        for i, sid in enumerate(batch_ids):
            rows.append(_write_sample(job, root, sid, layouts[i], images[i], status[i], scores[i],
                                      noise_seeds[i], backend, fingerprint, shard, per_sample))
        if progress:
            progress(len(batch_ids))
    table = pa.Table.from_pandas(pd.DataFrame(rows), preserve_index=False)
    buf = io.BytesIO()
    pq.write_table(table, buf)
    atomic_write_bytes(part, buf.getvalue())  # last: marks the shard as done
    kept = sum(r["kept"] for r in rows)
    return {"shard": shard, "samples": len(rows), "kept": kept,
            "seconds": time.perf_counter() - start, "skipped": False}


def _write_sample(job, root, sid, layout, image, status, scores, noise_seed, backend,
                  fingerprint, shard, seconds) -> dict:
    stem = _stem(job, sid)
    paths = {"image": f"images/{stem}.png", "semantic_mask": f"masks/semantic/{stem}.png",
             "instance_mask": f"masks/instance/{stem}.png"}
    atomic_save_png(root / paths["image"], image)
    atomic_save_png(root / paths["semantic_mask"], layout.semantic_map)
    atomic_save_png(root / paths["instance_mask"], layout.instance_map)
    instances = _instances_record(layout, scores)
    ious = [i["verify_iou"] for i in instances if i["verify_iou"] is not None]
    clip = [i["verify_clip"] for i in instances if i.get("verify_clip") is not None]
    s = job.sampler
    return {
        "id": sid, **paths, "split": split_of(job.seed, sid, job.val_fraction),
        "seed": job.seed, "noise_seed": noise_seed, "backend": job.model.backend,
        "model": backend.model_id, "weights_sha256": backend.weights, "dtype": job.model.dtype,
        "scheduler": s.scheduler, "steps": s.steps, "guidance": s.guidance, "eta": s.eta,
        "noise_temperature": s.noise_temperature, "caption": layout.caption,
        "prompt": prompt_record(job, layout), "layout": layout.to_json(),
        "instances": json.dumps(instances), "num_instances": len(instances),
        "verify_method": job.verify.resolved_method(job.model.backend),
        "verify_min_iou": min(ious) if ious else None,
        "verify_min_clip": min(clip) if clip else None,
        "kept": _is_kept(job, status, instances), "status": status, "seconds": seconds,
        "config_hash": fingerprint, "shard": shard,
    }


_CHECKER = None


def _load_checker():
    global _CHECKER
    if _CHECKER is None:
        from augment.image.checker import load_checker

        _CHECKER = load_checker()
    return _CHECKER


def read_manifest_parts(job: ImageJob, root: Path) -> pd.DataFrame:
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


def finalize_dataset(job: ImageJob, root: str | Path, seconds: float | None = None) -> dict:
    """Merge the manifest, write COCO/YOLO/dataset.json; returns the run summary."""
    root = Path(root)
    manifest = read_manifest_parts(job, root)
    buf = io.BytesIO()
    pq.write_table(pa.Table.from_pandas(manifest, preserve_index=False), buf)
    atomic_write_bytes(root / "manifest.parquet", buf.getvalue())
    categories = layout_categories(job.layout)
    labels = label_kind(job.model.backend)
    write_coco(root, manifest, categories, masks=labels == "masks")
    write_yolo(root, manifest, categories, masks=labels == "masks")
    summary = summarize(manifest, seconds)
    atomic_write_json(root / "dataset.json", {
        "name": job.name, "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "synthmill_version": __version__, "config": job.model_dump(mode="json"),
        "config_hash": job_fingerprint(job),
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
            "images_per_second": round(len(manifest) / seconds, 3) if seconds else None}


def generate_dataset(job: ImageJob, out: str | Path,
                     progress: Callable[[int], None] | None = None) -> tuple[Path, dict]:
    """Library entry point without Prefect: lock, generate pending shards, finalize."""
    root = dataset_dir(job, out)
    start = time.perf_counter()
    with FolderLock(root):
        prepare_dataset(job, out)
        for shard in range(job.num_shards):
            generate_shard(job, root, shard, progress)
        summary = finalize_dataset(job, root, time.perf_counter() - start)
    return root, summary
