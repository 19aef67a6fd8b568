"""The reference a set is scored against: features of the fidelity extractor, from a set (computed
through the feature cache) or from a ``.npz`` statistics file written once by ``save_reference``.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from augment.core.io import atomic_write_bytes
from evaluation.config import EvalSpec
from evaluation.features import Extractor, SetFeatures, compute_features
from evaluation.registry import MODALITIES
from evaluation.sets import open_set


@dataclass
class Reference:
    """Reference features of the fidelity extractor (from a set or a stats file).

    ``features`` (N, D); ``groups``: group name -> rows of ``features``; ``files``: the file of each
    row, when the reference is a set.
    """

    name: str
    extractor: str
    weights: str
    features: np.ndarray
    groups: dict[str, list[int]] = field(default_factory=dict)
    files: list[str] | None = None


def save_reference(ref: Reference, path: str | Path) -> Path:
    """Write reference features + metadata to a ``.npz`` (no pickles)."""
    buf = io.BytesIO()
    meta = {"name": ref.name, "extractor": ref.extractor, "weights": ref.weights,
            "groups": ref.groups, "n": int(len(ref.features))}
    np.savez(buf, features=ref.features, meta=np.asarray(json.dumps(meta)))
    return atomic_write_bytes(path, buf.getvalue())


def load_reference_file(path: str | Path, extractor: Extractor) -> Reference:
    """A ``save_reference`` file; refused when another extractor or other weights made it."""
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as data:
            meta = json.loads(str(data["meta"]))
            features = data["features"]
    except (OSError, KeyError, ValueError) as exc:
        raise ValueError(f"{path}: not a synthmill reference statistics file ({exc})") from exc
    if (meta["extractor"], meta["weights"]) != (extractor.name, extractor.weights):
        raise ValueError(f"{path} was computed with {meta['extractor']} (weights {meta['weights']}); "
                         f"this evaluation uses {extractor.name} (weights {extractor.weights}): "
                         "recompute it with `synthmill reference`")
    return Reference(meta["name"], meta["extractor"], meta["weights"], features, meta["groups"])


def reference_from_set(path: str | Path, spec: EvalSpec, extractor: Extractor | None = None,
                       samples_dir: str | Path | None = None,
                       modality: str | None = None) -> tuple[Reference, SetFeatures]:
    """The reference of a set (``evaluation.sets.open_set``; every sample, kept or not), by
    ``extractor`` (None: the fidelity extractor of the set's modality); ``modality``: the modality
    the reference is for, refused when the set is of another."""
    ref_set = open_set(path, samples_dir or spec.reference_images, kept_only=False)
    if modality is not None and ref_set.modality != modality:
        raise ValueError(f"reference {path} holds {ref_set.modality} samples; {modality} datasets "
                         f"need a reference of {modality} samples"
                         + (" (EvalSpec.audio_reference)" if modality == "audio" else ""))
    if extractor is None:
        hooks = MODALITIES.get(ref_set.modality).load_hooks()
        extractor = hooks.extractors(spec, ref_set, {"fidelity"}).reference()
    feats = compute_features(ref_set, [extractor], spec.cache_dir)
    groups = readable_groups(ref_set.groups, feats.rows)
    return (Reference(ref_set.name, extractor.name, extractor.weights,
                      feats.arrays[extractor.name]["features"], groups,
                      [str(ref_set.files[r]) for r in feats.rows]), feats)


def load_reference(path: str | Path, spec: EvalSpec, extractor: Extractor,
                   modality: str | None = None) -> Reference:
    """A reference from a statistics ``.npz`` or from a set (of ``modality``, when given)."""
    if str(path).endswith(".npz"):
        return load_reference_file(path, extractor)
    return reference_from_set(path, spec, extractor, modality=modality)[0]


def readable_groups(groups: dict[str, list[int]], rows: np.ndarray) -> dict[str, list[int]]:
    """Group members as positions among the readable rows (unreadable files dropped)."""
    position = {int(r): i for i, r in enumerate(rows)}
    return {g: [position[m] for m in members if m in position] for g, members in groups.items()}
