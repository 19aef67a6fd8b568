"""CLIP alignment: CLIPScore of image/caption pairs.

The metrics are pure functions of L2-normalised features (``augment.image.clip.encode_images`` /
``encode_texts``), so one cached feature pass serves all of them; crops and zero-shot
classification are ``augment.image.clip``'s, the same as generation-time verification uses.
"""

from __future__ import annotations

import numpy as np


def _cosine_rows(image_features: np.ndarray, text_features: np.ndarray) -> np.ndarray:
    """Cosine similarity of matching rows, (N,) float64."""
    a = np.asarray(image_features, dtype=np.float64)
    b = np.asarray(text_features, dtype=np.float64)
    if a.ndim != 2 or a.shape != b.shape:
        raise ValueError(f"features must be two (N, D) arrays of one shape, got {a.shape} and {b.shape}")
    return (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


def clip_score(image_features: np.ndarray, text_features: np.ndarray, w: float = 2.5) -> np.ndarray:
    """CLIPScore of Hessel et al. 2021, per pair: ``w * max(cos(v_i, c_i), 0)``, (N,) float64.

    ``image_features`` / ``text_features``: (N, D) features of matching rows (image i was made from
    caption i). The paper's ``w = 2.5`` stretches CLIP's usual cosine range to about 0..1.
    """
    return w * np.maximum(_cosine_rows(image_features, text_features), 0.0)


def clip_score_100(image_features: np.ndarray, text_features: np.ndarray) -> np.ndarray:
    """The ``100 * cos`` variant of CLIPScore per pair, (N,) float64, not clipped.

    torchmetrics' ``CLIPScore`` reports ``max(mean(100 * cos), 0)`` over a set; the per-pair values
    here stay unclipped so their mean and confidence interval are unbiased.
    """
    return 100.0 * _cosine_rows(image_features, text_features)
