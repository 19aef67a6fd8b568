"""Verification of generated event clips before they are mixed, by a model that is not the
generator: the embedded tones classifier (``classifier``) or CLAP zero-shot (``clap``)."""

from __future__ import annotations

from functools import lru_cache, partial
from typing import Callable

import numpy as np

from augment.audio.classifier import TonesClassifier, clip_scores, load_classifier
from augment.audio.clap import clap_scores, load_clap
from augment.audio.soundscape import Event
from augment.audio.world import CLASSES
from augment.config.audio import AudioJob
from augment.core.devices import resolve_device

SCORE_KEYS = {"classifier": "verify_class", "clap": "verify_clap"}
"""The per-event score each method writes, which ``min_score`` is compared with."""


@lru_cache(maxsize=1)
def _embedded_classifier() -> TonesClassifier:
    return load_classifier()


def load_verifier(job: AudioJob) -> Callable[[np.ndarray, list[Event]], list[dict]] | None:
    """``(clips float (E, CLIP_SAMPLES), events) -> per-event score dicts`` for the job's
    verification method, or None when it is "none"."""
    method = job.verify.resolved_method(job.model.backend)
    if method == "none":
        return None
    if method == "classifier":
        return partial(clip_scores, _embedded_classifier())
    clap = load_clap(job.verify.clap_model, resolve_device(job.model.device))
    return partial(clap_scores, clap, categories=list(CLASSES))


def is_kept(job: AudioJob, status: str, events: list[dict]) -> bool:
    """A soundscape is kept when every clip rendered and every event scores at least
    ``verify.min_score`` (and no checked pitch band is wrong)."""
    if status == "failed":
        return False
    method = job.verify.resolved_method(job.model.backend)
    if method == "none":
        return True
    key = SCORE_KEYS[method]
    return all(e.get(key) is not None and e[key] >= job.verify.min_score
               and e.get("pitch_ok") is not False for e in events)
