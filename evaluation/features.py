"""Features once, metrics many: every extractor runs once per sample set, cached on disk.

The cache key of a set is a hash of its files' *contents* plus the extractor's name and weights
hash, so a changed file is a miss and a renamed copy is a hit (unlike caches keyed by a name the
user gives). A small index keyed by (path, size, mtime) lets an unchanged set skip even reading its
files. On a miss, the files are decoded once (by the set's reader) and every missing extractor
runs on the same chunk.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Protocol

import numpy as np
import torch
from tqdm.auto import tqdm

from augment.core.io import atomic_write_bytes, atomic_write_json
from evaluation.sets import SampleSet, read_chunks

log = logging.getLogger(__name__)

CACHE_VERSION = "1"  # bump when preprocessing changes, so old features are not reused


class Extractor(Protocol):
    """A feature extractor: ``__call__(batch (B, ...), rows (B,) int) -> {name: array (B, ...)}``.

    ``prepare`` turns decoded samples (the set reader's tensors) into the batch the extractor takes
    (images: resized to its input size and stacked, uint8 (B, 3, S, S)). ``rows`` are the samples'
    row numbers in the set, for extractors that also need the set's labels (e.g. crops of
    instances). Arrays are concatenated along axis 0 over chunks.
    """

    name: str
    weights: str  # hash of the weights, part of the cache key

    def prepare(self, samples: list[torch.Tensor]) -> torch.Tensor: ...

    def __call__(self, batch: torch.Tensor, rows: np.ndarray) -> dict[str, np.ndarray]: ...


@dataclass
class FunctionExtractor:
    """Wrap a plain function (and the batching of its inputs) as an ``Extractor``."""

    name: str
    weights: str
    prepare: Callable[[list[torch.Tensor]], torch.Tensor]
    fn: Callable[[torch.Tensor, np.ndarray], dict[str, np.ndarray]]
    batch_size: int = 64

    def __call__(self, batch: torch.Tensor, rows: np.ndarray) -> dict[str, np.ndarray]:
        parts = [self.fn(batch[i:i + self.batch_size], rows[i:i + self.batch_size])
                 for i in range(0, len(batch), self.batch_size)]
        return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


@dataclass
class ExtractorPlan:
    """The extractors one evaluation runs over its set, by the need they meet (``fidelity`` always;
    see ``evaluation.registry``), in the order they run on each chunk."""

    by_need: dict[str, Extractor]

    def extractors(self) -> list[Extractor]:
        """The distinct extractors to run (one may meet several needs), in order."""
        return list({e.name: e for e in self.by_need.values()}.values())

    def reference(self) -> Extractor:
        """The extractor to run over the reference set: the fidelity extractor."""
        return self.by_need["fidelity"]


@dataclass
class SetFeatures:
    """Features of one set: ``arrays[extractor][name]`` rows align with ``rows`` (readable files)."""

    key: str
    rows: np.ndarray
    arrays: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)
    unreadable: list[tuple[str, str]] = field(default_factory=list)
    computed: list[str] = field(default_factory=list)  # extractors that ran (cache misses)


def _stat_key(sample_set: SampleSet) -> str:
    digest = hashlib.blake2b(digest_size=16)
    for path in sample_set.files:
        try:
            st = os.stat(path)
            digest.update(f"{path}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
        except OSError:
            digest.update(f"{path}\0missing\n".encode())
    return digest.hexdigest()


def _content_key(hashes: list[str]) -> str:
    return hashlib.blake2b("\n".join(hashes).encode(), digest_size=16).hexdigest()


def _hash_files(sample_set: SampleSet) -> list[str]:
    out = []
    for path in sample_set.files:
        try:
            out.append(hashlib.blake2b(Path(path).read_bytes(), digest_size=16).hexdigest())
        except OSError:
            out.append(f"unreadable:{path}")
    return out


class FeatureCache:
    """``<dir>/<content key>/<extractor>-<weights>.npz`` plus ``<dir>/index.json``."""

    def __init__(self, directory: str | Path):
        self.dir = Path(directory)

    def _index_path(self) -> Path:
        return self.dir / "index.json"

    def lookup_key(self, stat_key: str) -> str | None:
        try:
            return json.loads(self._index_path().read_text()).get(stat_key)
        except (OSError, ValueError):
            return None

    def remember_key(self, stat_key: str, content_key: str) -> None:
        try:
            index = json.loads(self._index_path().read_text())
        except (OSError, ValueError):
            index = {}
        index[stat_key] = content_key
        atomic_write_json(self._index_path(), index)

    def _path(self, content_key: str, extractor: Extractor) -> Path:
        return self.dir / content_key / f"{extractor.name}-{extractor.weights}-v{CACHE_VERSION}.npz"

    def load(self, content_key: str, extractor: Extractor) -> dict | None:
        path = self._path(content_key, extractor)
        if not path.exists():
            return None
        try:
            with np.load(path, allow_pickle=False) as data:
                return {k: data[k] for k in data.files}
        except (OSError, ValueError) as exc:
            log.warning("ignoring unreadable feature cache file %s: %s", path, exc)
            return None

    def save(self, content_key: str, extractor: Extractor, arrays: dict[str, np.ndarray]) -> None:
        buf = io.BytesIO()
        np.savez(buf, **arrays)
        atomic_write_bytes(self._path(content_key, extractor), buf.getvalue())


def compute_features(sample_set: SampleSet, extractors: list[Extractor], cache_dir: str | Path,
                     chunk_size: int = 256, progress: bool = True) -> SetFeatures:
    """Features of every extractor for ``sample_set``, from the cache where possible."""
    cache = FeatureCache(cache_dir)
    stat_key = _stat_key(sample_set)
    content_key = cache.lookup_key(stat_key) or _content_key(_hash_files(sample_set))
    cache.remember_key(stat_key, content_key)
    result = SetFeatures(key=content_key, rows=np.zeros(0, dtype=np.int64))
    missing = []
    for extractor in extractors:
        cached = cache.load(content_key, extractor)
        if cached is None:
            missing.append(extractor)
            continue
        result.rows = cached.pop("_rows")
        result.unreadable = [tuple(x) for x in json.loads(str(cached.pop("_unreadable")))]
        result.arrays[extractor.name] = cached
    if missing:
        _extract_missing(sample_set, missing, cache, result, chunk_size, progress)
    if result.unreadable:
        log.warning("%s: %d unreadable files excluded (first: %s)", sample_set.name,
                    len(result.unreadable), result.unreadable[0])
    return result


def _extract_missing(sample_set, extractors, cache, result, chunk_size, progress) -> None:
    rows, unreadable = [], []
    parts: dict[str, list[dict]] = {e.name: [] for e in extractors}
    bar = tqdm(total=len(sample_set), desc=f"features {sample_set.name}", unit="sample",
               disable=not progress)
    for chunk, bad in read_chunks(sample_set, chunk_size):
        unreadable += bad
        if chunk.rows:
            rows += chunk.rows
            for extractor in extractors:
                batch = extractor.prepare(chunk.samples)
                with torch.no_grad():
                    parts[extractor.name].append(extractor(batch, np.asarray(chunk.rows)))
        bar.update(len(chunk.rows) + len(bad))
    bar.close()
    if not rows:
        raise ValueError(f"{sample_set.name}: none of its {len(sample_set)} files could be read")
    result.rows = np.asarray(rows, dtype=np.int64)
    result.unreadable = unreadable
    for extractor in extractors:
        arrays = {k: np.concatenate([p[k] for p in parts[extractor.name]])
                  for k in parts[extractor.name][0]}
        result.arrays[extractor.name] = arrays
        result.computed.append(extractor.name)
        cache.save(result.key, extractor, {**arrays, "_rows": result.rows,
                                           "_unreadable": np.asarray(json.dumps(unreadable))})
