"""Loading a generator backend by its settings, and running it with the NaN guard.

A loaded backend (what a registry entry's loader returns) has ``model_id``, ``weights`` (a hash)
and ``render(conditions, sampler, seeds, force_fp32=False)``, which returns float outputs in
[0, 1] with one row per condition (images (B, H, W, 3); NaN/inf left in place for the guard to
find), plus ``prompt(condition, sampler)``: the text it was prompted with, or None.
"""

from __future__ import annotations

import logging
import threading
from functools import lru_cache

import numpy as np

from augment.config.base import BackendSpec, SamplerSpec
from augment.core.registry import BACKENDS

log = logging.getLogger(__name__)

_LOAD_LOCK = threading.Lock()


@lru_cache(maxsize=4)
def _load_cached(backend: str, spec_json: str):
    entry = BACKENDS.get(backend)
    spec = entry.spec_model().model_validate_json(spec_json)
    log.info("loading backend %s from %s", backend, spec.path or "embedded weights")
    from diffusers.utils import logging as diffusers_logging

    diffusers_logging.disable_progress_bar()  # shards show progress; no "Loading components" bars
    return entry.load(spec)


def load_backend(spec: BackendSpec):
    """The backend for ``spec``, loaded once per process (shards in threads share its weights)."""
    with _LOAD_LOCK:  # shards start together in threads: load the weights once, not per shard
        return _load_cached(spec.backend, spec.model_dump_json())


def render_guarded(backend, conditions: list, sampler: SamplerSpec,
                   seeds: list[int]) -> tuple[np.ndarray, list[str]]:
    """Render a batch; samples with NaN/inf (e.g. fp16 overflow) are retried once in fp32.

    Returns (outputs float in [0, 1], one row per condition; status per sample: "ok",
    "retried_fp32" or "failed"; failed rows are zeros).
    """
    outputs = backend.render(conditions, sampler, seeds)
    bad = ~np.isfinite(outputs).reshape(len(outputs), -1).all(axis=1)
    status = ["ok"] * len(outputs)
    if bad.any():
        idx = np.flatnonzero(bad)
        log.warning("non-finite output for samples %s; retrying them in float32", idx.tolist())
        retry = backend.render([conditions[i] for i in idx], sampler, [seeds[i] for i in idx],
                               force_fp32=True)
        for j, i in enumerate(idx):
            if np.isfinite(retry[j]).all():
                outputs[i], status[i] = retry[j], "retried_fp32"
            else:
                outputs[i], status[i] = 0.0, "failed"
    return outputs, status
