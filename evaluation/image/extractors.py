"""The image extractors an evaluation runs, built from ``EvalSpec``, as cacheable ``Extractor``s.

- fidelity: the embedded ``shapes-features`` network, or torch-fidelity's ``inception-v3-compat``
  with local weights (read from safetensors: torch-fidelity itself would unpickle a .pth);
- clip: image embeddings and instance-crop embeddings (``evaluation.image.clip_alignment``);
- checker: the shapes checker's per-pixel class and colour (layout fidelity).
"""

from __future__ import annotations

import hashlib
import json
import unittest.mock
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file
from torch_fidelity import feature_extractor_inceptionv3 as fe

from augment.core.io import sha256_file
from augment.image.checker import EMBEDDED_CHECKER, WEIGHTS_NAME, label_map, load_checker, predict
from augment.image.world import CLASSES
from evaluation.config import EvalSpec
from evaluation.features import Extractor, ExtractorPlan, FunctionExtractor
from evaluation.image.sets import ImageSet, stack_resized
from evaluation.image.shapes_features import (EXTRACTOR_NAME, INPUT_SIZE, extract,
                                              load_shapes_features, weights_sha256)

INCEPTION_NAME = "inception-v3-compat"
INCEPTION_FEATURES = ("2048", "logits_unbiased")


class CheckerMaps:
    """Per-pixel checker predictions handed from the shapes-features pass to the checker extractor.

    shapes-features runs the shapes checker as its front end; when its copy has the embedded
    checker's weights, the layout-fidelity extractor takes the argmax maps of that same forward
    pass instead of running the checker a second time. Batches are matched by content, and a
    batch that was not seen is computed as usual, so the result never depends on the hand-over.
    """

    def __init__(self, capacity: int = 64):
        self.capacity = capacity
        self.active = True  # off while the same extractor runs over the reference
        self.maps: dict[bytes, tuple[np.ndarray, np.ndarray]] = {}

    @staticmethod
    def key(images) -> bytes:
        return hashlib.blake2b(images.contiguous().numpy().tobytes(), digest_size=16).digest() + \
            str(tuple(images.shape)).encode()

    def put(self, images, semantic: np.ndarray, colour: np.ndarray) -> None:
        if len(self.maps) >= self.capacity:
            self.maps.pop(next(iter(self.maps)))
        self.maps[self.key(images)] = (semantic, colour)

    def take(self, images) -> tuple[np.ndarray, np.ndarray] | None:
        return self.maps.pop(self.key(images), None)


def shapes_features_extractor(spec: EvalSpec, maps: CheckerMaps | None = None) -> FunctionExtractor:
    model = load_shapes_features(spec.extractor_weights, device=spec.device)
    if maps is not None and not _same_checker(model.checker, spec.device):
        maps = None
    names = ("features", "logits_unbiased")
    if maps is not None:
        names += ("checker_class_logits", "checker_colour_logits")

    def fn(images, rows):
        out = extract(model, images, batch_size=spec.batch_size, outputs=names)
        if maps is not None and maps.active:
            maps.put(images, *(label_map(out[k]).numpy().astype(np.uint8)
                               for k in ("checker_class_logits", "checker_colour_logits")))
        return {"features": out["features"].numpy(), "logits": out["logits_unbiased"].numpy()}

    return FunctionExtractor(EXTRACTOR_NAME, weights_sha256(spec.extractor_weights)[:16],
                             partial(stack_resized, size=INPUT_SIZE), fn, spec.batch_size)


def _same_checker(checker, device: str) -> bool:
    """True when ``checker`` holds exactly the embedded shapes checker's weights."""
    embedded = load_checker(device=device).state_dict()
    mine = checker.state_dict()
    return embedded.keys() == mine.keys() and all(torch.equal(embedded[k], mine[k]) for k in mine)


def load_inception(weights: str | Path, device: str = "cpu"):
    """torch-fidelity's InceptionV3 (the FID standard) with weights from a .safetensors file.

    torch-fidelity loads its weights with ``torch.load(weights_only=False)``, i.e. by unpickling;
    this intercepts exactly that call so the state dict comes from safetensors instead. Convert
    the official .pth once with ``synthmill convert-weights`` (a tensors-only unpickler).
    """
    path = Path(weights)
    if path.suffix != ".safetensors" or not path.is_file():
        raise FileNotFoundError(
            f"inception weights {path} not found or not .safetensors: download torch-fidelity's "
            "weights-inception-2015-12-05-6726825d.pth where you have network, convert it with "
            "`synthmill convert-weights IN.pth OUT.safetensors`, and set evaluate.extractor_weights")
    state = load_file(path)
    with unittest.mock.patch.object(fe.torch, "load", lambda *a, **k: state):
        model = fe.FeatureExtractorInceptionV3(INCEPTION_NAME, list(INCEPTION_FEATURES),
                                               feature_extractor_weights_path=str(path))
    return model.to(device).eval()


def inception_extractor(spec: EvalSpec) -> FunctionExtractor:
    if not spec.extractor_weights:
        raise FileNotFoundError("evaluate.extractor_weights: inception-v3-compat needs a local "
                                ".safetensors weights file (nothing is downloaded)")
    model = load_inception(spec.extractor_weights, spec.device)

    def fn(images, rows):
        features, logits = model(images.to(spec.device))
        return {"features": features.double().cpu().numpy(), "logits": logits.cpu().numpy()}

    return FunctionExtractor(INCEPTION_NAME, _short_hash(spec.extractor_weights),
                             partial(stack_resized, size=None), fn, spec.batch_size)


def fidelity_extractor(spec: EvalSpec, maps: CheckerMaps | None = None) -> FunctionExtractor:
    """The extractor ``spec.extractor`` names (FID, KID, IS, precision/recall, diversity features);
    ``maps``: where shapes-features leaves the checker maps of the images it saw."""
    if spec.extractor == INCEPTION_NAME:
        return inception_extractor(spec)
    return shapes_features_extractor(spec, maps)


def checker_extractor(spec: EvalSpec, maps: CheckerMaps | None = None) -> FunctionExtractor:
    model = load_checker(device=spec.device)

    def fn(images, rows):
        handed = maps.take(images) if maps is not None else None
        if handed is not None:  # the same forward pass, already run inside shapes-features
            return {"semantic": handed[0], "colour": handed[1]}
        semantic, colour = predict(model, images)
        return {"semantic": semantic.numpy().astype(np.uint8), "colour": colour.numpy().astype(np.uint8)}

    return FunctionExtractor("shapes-checker", _short_hash(EMBEDDED_CHECKER / WEIGHTS_NAME),
                             partial(stack_resized, size=64), fn, spec.batch_size)


def shapes_world(image_set: ImageSet) -> bool:
    """True when the set's layouts are shapes-world layouts (the checker knows their classes)."""
    if not image_set.layouts:
        return False
    first = json.loads(image_set.layouts[0])
    return all(inst["category"] in CLASSES for inst in first.get("instances", []))


def _short_hash(path: str | Path) -> str:
    return sha256_file(path)[:16]


@dataclass
class ImagePlan(ExtractorPlan):
    """The image extractors of one evaluation; ``maps`` hands the shapes checker's maps from the
    shapes-features pass over the set to the checker extractor."""

    maps: CheckerMaps | None = None

    def reference(self) -> Extractor:
        if self.maps is not None:
            self.maps.active = False  # the reference needs no layout maps
        return super().reference()


def plan_extractors(spec: EvalSpec, image_set: ImageSet, needs: set[str]) -> ImagePlan:
    """The fidelity extractor, and the CLIP and checker extractors when a metric needs them (the
    checker only for shapes-world layouts, whose classes it knows)."""
    maps = CheckerMaps() if "checker" in needs and shapes_world(image_set) else None
    by_need: dict[str, Extractor] = {"fidelity": fidelity_extractor(spec, maps)}
    if "clip" in needs:
        # open_clip is imported only when a metric needs CLIP features
        from evaluation.image.clip_alignment import clip_extractor

        by_need["clip"] = clip_extractor(spec, image_set)
    if maps is not None:
        by_need["checker"] = checker_extractor(spec, maps)
    return ImagePlan(by_need, maps)
