"""Does a synthetic set help? Train on real (and synthetic), test on held-out real, under a fixed
protocol (``evaluation.config.UtilitySpec``) that cannot flatter it.

Arms, each trained from scratch with the same optimiser, steps, batch size and augmentations (the
8 symmetries of the square; nothing else), on a budget B of real images:

- ``real``: the B real images only (the baseline);
- ``real+synthetic``: the same B real images, each batch ``synthetic_ratio`` synthetic;
- ``synthetic``: the synthetic set only (one run per seed, the same for every budget);
- ``more-real``: B real images plus as many further real images as there are synthetic ones (the
  upper reference: what the same number of real images would have bought), when the real pool has
  enough.

Seed s draws the real subset (a permutation of the pool, B first; more-real takes the next ones),
the initial weights and the batches, so arms of one seed differ only in their data, and a gain is
the per-seed difference to ``real`` at the same budget and seed (paired), with a Student-t
interval over seeds; an interval that crosses zero is a tie. The model is the shapes checker's
segmenter (``augment.image.checker.ShapesChecker``, class head only): test mIoU over the shape
classes, and instances as connected components of each predicted class (score: the mean class
probability over the component), scored by ``pycocotools`` COCOeval as box AP and AP50.

Leakage guard: a training or synthetic image that is a test image (same pixels), or a near
duplicate of one (memorization features closer than the ``leakage_quantile`` of test-vs-test
neighbour distances, and pixels within ``NEAR_PIXEL_GAP`` on average: the same picture re-encoded
or lightly noised, not another scene of the same few shapes), stops the run before any training,
naming how many and which.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage

from augment.core.training import Optimisation, Stats, adamw_one_cycle, train_loop
from augment.image.checker import ShapesChecker, confusion_matrix, miou_from_confusion
from augment.image.training.augmentations import dihedral, symmetry_flags
from augment.image.world import CLASSES
from evaluation.config import EvalSpec, UtilitySpec


@dataclass
class SegSet:
    """Images with their labels: ``images`` (N, 3, H, W) uint8, ``semantic`` (N, H, W) uint8
    class id (0 = background), ``instance`` (N, H, W) int32 instance id (0 = none); ``ids`` name
    each image in messages; ``source`` says where the set came from."""

    name: str
    images: np.ndarray
    semantic: np.ndarray
    instance: np.ndarray
    ids: list[str]
    source: str

    def __len__(self) -> int:
        return len(self.images)

    def take(self, index: np.ndarray) -> "SegSet":
        return SegSet(self.name, self.images[index], self.semantic[index], self.instance[index],
                      [self.ids[i] for i in index], self.source)

    def sha256(self) -> str:
        digest = hashlib.sha256()
        for array in (self.images, self.semantic, self.instance):
            digest.update(np.ascontiguousarray(array).tobytes())
        return digest.hexdigest()


def load_dataset(path: str | Path, name: str | None = None) -> SegSet:
    """A synthmill image dataset with masks (its kept samples) as a ``SegSet``."""
    from augment.core.versions import dataset_label
    from augment.image.dataset import SynthDataset

    ds = SynthDataset(path)
    if not ds.has_masks:
        raise ValueError(f"{ds.root}: a boxes-only dataset; the utility segmenter needs masks")
    if len(ds) == 0:
        raise ValueError(f"{ds.root}: no kept sample to train or test on")
    images, semantic, instance, ids = [], [], [], []
    for item in ds:
        images.append((item["image"] * 255).round().to(torch.uint8).numpy())
        semantic.append(item["semantic"].numpy().astype(np.uint8))
        inst = np.zeros(item["semantic"].shape, np.int32)
        for k, mask in enumerate(item["masks"].numpy()):
            inst[mask] = k + 1
        instance.append(inst)
        ids.append(f"{item['id']:06d}")
    return SegSet(name or dataset_label(ds.root), np.stack(images), np.stack(semantic),
                  np.stack(instance), ids, str(ds.root))


def real_scenes(seed: int, count: int, resolution: int, name: str) -> SegSet:
    """Scenes ``0 .. count-1`` of the uniform-colour shapes world seeded with ``seed``."""
    from augment.image.training.scenes import render_scenes_parallel, world_layout_spec

    scenes = render_scenes_parallel(world_layout_spec(resolution, skewed=False), seed, count)
    return SegSet(name, scenes.images, scenes.semantic(), scenes.instance.astype(np.int32),
                  [f"scene {i}" for i in range(count)],
                  f"shapes-world real scenes (seed {seed}, {count} at {resolution}px)")


# --- leakage -------------------------------------------------------------------------------------

def _feature_fn(device: str):
    """images (N, 3, H, W) uint8 -> memorization features (N, D), the extractor loaded once."""
    from evaluation.image.extractors import fidelity_extractor

    extractor = fidelity_extractor(EvalSpec(device=device))

    def features(images: np.ndarray) -> np.ndarray:
        batch = extractor.prepare([torch.from_numpy(img) for img in images])
        return extractor(batch, np.arange(len(images)))["features"]

    return features


NEAR_PIXEL_GAP = 0.03
"""Mean absolute pixel difference (on [0, 1]) up to which a feature-space neighbour of a test image
is the same picture (re-encoded, lightly noised or shifted in colour), not another scene."""


def _pixel_gap(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(np.float32) - b.astype(np.float32)).mean() / 255.0)


def check_leakage(test: SegSet, others: list[SegSet], spec: UtilitySpec) -> dict:
    """ValueError naming the leaked images when a set of ``others`` holds a test image or a near
    duplicate of one; else the threshold used and the closest distance seen per set."""
    from evaluation.neighbours import nearest_neighbours

    def digest(img: np.ndarray) -> str:
        return hashlib.sha256(np.ascontiguousarray(img).tobytes()).hexdigest()

    test_hashes = {digest(img): i for i, img in enumerate(test.images)}
    features = _feature_fn(spec.device)
    test_features = features(test.images)
    own, _ = nearest_neighbours(test_features, test_features, exclude_self=True)
    threshold = float(np.quantile(own, spec.leakage_quantile))
    closest = {}
    for other in others:
        exact = [(other.ids[i], test.ids[test_hashes[h]]) for i, h in
                 enumerate(digest(img) for img in other.images) if h in test_hashes]
        distances, nearest = nearest_neighbours(features(other.images), test_features)
        near = [(other.ids[i], test.ids[nearest[i]]) for i in np.flatnonzero(distances < threshold)
                if _pixel_gap(other.images[i], test.images[nearest[i]]) <= NEAR_PIXEL_GAP]
        leaks = list(dict.fromkeys(exact + near))
        if leaks:
            shown = ", ".join(f"{a} = test {b}" for a, b in leaks[:5])
            more = f" and {len(leaks) - 5} more" if len(leaks) > 5 else ""
            raise ValueError(f"leakage: {len(leaks)} image(s) of {other.name} ({other.source}) "
                             f"are test images or near duplicates of them ({len(exact)} exact): "
                             f"{shown}{more}; remove them or choose another test set")
        closest[other.name] = float(distances.min())
    return {"threshold": threshold, "closest": closest}


# --- one run ---------------------------------------------------------------------------------------

def train_segmenter(parts: list[tuple[SegSet, float]], spec: UtilitySpec,
                    seed: int) -> ShapesChecker:
    """A fresh segmenter trained for ``spec.steps`` on batches that draw each part's share of
    ``batch_size`` (with replacement), under a random symmetry of the square each."""
    device = torch.device(spec.device)
    torch.manual_seed(seed)
    model = ShapesChecker(spec.widths, num_colours=1).to(device)
    gen = torch.Generator(device=device).manual_seed(seed)
    counts = [int(round(share * spec.batch_size)) for _, share in parts]
    counts[-1] = spec.batch_size - sum(counts[:-1])
    data = [(torch.from_numpy(p.images).to(device), torch.from_numpy(p.semantic).to(device))
            for p, _ in parts]

    def draw() -> tuple[torch.Tensor, torch.Tensor]:
        xs, ys = [], []
        for (images, semantic), k in zip(data, counts):
            if k > 0:
                idx = torch.randint(len(images), (k,), generator=gen, device=device)
                xs.append(images[idx])
                ys.append(semantic[idx])
        x, y = torch.cat(xs).float() / 255.0, torch.cat(ys).long()
        flags = symmetry_flags(len(x), gen, device)
        return dihedral(x, flags), dihedral(y, flags)

    def loss(batch) -> Stats:
        x, y = batch
        return {"loss": F.cross_entropy(model(x)[0], y)}

    optimisation = Optimisation(*adamw_one_cycle(model.parameters(), spec.learning_rate,
                                                 spec.steps))
    train_loop(draw, loss, optimisation, spec.steps, max(1, spec.steps), "train utility segmenter")
    return model.eval()


@torch.no_grad()
def _predict(model: ShapesChecker, images: np.ndarray, device: str) -> np.ndarray:
    """(N, K, H, W) float32 class probabilities."""
    out = []
    for i in range(0, len(images), 64):
        x = torch.from_numpy(images[i:i + 64]).to(device).float() / 255.0
        out.append(model(x)[0].softmax(1).cpu().numpy())
    return np.concatenate(out)


def _box(mask: np.ndarray) -> list[float]:
    rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
    return [float(cols[0]), float(rows[0]), float(cols[-1] + 1 - cols[0]),
            float(rows[-1] + 1 - rows[0])]


def coco_box_ap(test: SegSet, probs: np.ndarray) -> tuple[float, float]:
    """(box AP, AP50) of the connected components of each predicted class against the test
    instances, by pycocotools' COCOeval (area ranges and 100 detections per image as COCO)."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    images, annotations, detections = [], [], []
    pred = probs.argmax(1)
    for i in range(len(test)):
        h, w = test.semantic[i].shape
        images.append({"id": i, "height": h, "width": w})
        for k in np.unique(test.instance[i]):
            if k == 0:
                continue
            mask = test.instance[i] == k
            category = int(np.bincount(test.semantic[i][mask]).argmax())
            annotations.append({"id": len(annotations) + 1, "image_id": i, "iscrowd": 0,
                                "category_id": category, "bbox": _box(mask),
                                "area": float(mask.sum())})
        for c in range(1, probs.shape[1]):
            components, n = ndimage.label(pred[i] == c)
            for j in range(1, n + 1):
                mask = components == j
                if mask.sum() >= 4:
                    detections.append({"image_id": i, "category_id": c, "bbox": _box(mask),
                                       "score": float(probs[i, c][mask].mean())})
    if not detections:
        return 0.0, 0.0
    truth = COCO()
    truth.dataset = {"images": images, "annotations": annotations,
                     "categories": [{"id": k + 1, "name": n} for k, n in enumerate(CLASSES)]}
    with contextlib.redirect_stdout(io.StringIO()):
        truth.createIndex()
        found = truth.loadRes(detections)
        run = COCOeval(truth, found, "bbox")
        run.evaluate()
        run.accumulate()
        run.summarize()
    return float(max(run.stats[0], 0.0)), float(max(run.stats[1], 0.0))


def score(model: ShapesChecker, test: SegSet, device: str) -> dict:
    """Test figures of one trained model: mIoU over the shape classes, per-class IoU, box AP."""
    probs = _predict(model, test.images, device)
    conf = confusion_matrix(probs.argmax(1), test.semantic, len(CLASSES) + 1)
    _, per_class = miou_from_confusion(conf)
    ap, ap50 = coco_box_ap(test, probs)
    return {"utility_miou": float(np.nanmean(per_class[1:])), "utility_box_ap": ap,
            "utility_box_ap50": ap50,
            "per_class_iou": {c: None if np.isnan(v) else round(float(v), 5)
                              for c, v in zip(CLASSES, per_class[1:])}}


@dataclass
class Sets:
    """The sets of one utility study: ``real`` (the pool budgets draw from), ``synthetic``, ``test``."""

    real: SegSet
    synthetic: SegSet
    test: SegSet


def runs(spec: UtilitySpec, sets: Sets) -> list[tuple[str, int, int]]:
    """Every (arm, budget, seed) of the study; ``synthetic`` has budget 0 (it uses no real image);
    ``more-real`` only at budgets the pool can serve."""
    seeds = range(spec.seed, spec.seed + spec.seeds)
    out = []
    for arm in spec.arms:
        if arm == "synthetic":
            out += [(arm, 0, s) for s in seeds]
            continue
        for budget in spec.budgets:
            if budget > len(sets.real):
                raise ValueError(f"budgets: {budget} real images asked, the real set "
                                 f"({sets.real.source}) has {len(sets.real)}")
            if arm == "more-real" and budget + len(sets.synthetic) > len(sets.real):
                continue
            out += [(arm, budget, s) for s in seeds]
    return out


def run_one(arm: str, budget: int, seed: int, spec: UtilitySpec, sets: Sets) -> dict:
    """Train and score one (arm, budget, seed); returns its figures."""
    order = np.random.default_rng(seed).permutation(len(sets.real))
    real = sets.real.take(order[:budget]) if budget else None
    if arm == "real":
        parts = [(real, 1.0)]
    elif arm == "real+synthetic":
        parts = [(real, 1 - spec.synthetic_ratio), (sets.synthetic, spec.synthetic_ratio)]
    elif arm == "synthetic":
        parts = [(sets.synthetic, 1.0)]
    else:  # more-real: the budget plus as many further real images as synthetic ones
        parts = [(sets.real.take(order[:budget + len(sets.synthetic)]), 1.0)]
    model = train_segmenter(parts, spec, seed)
    return {"arm": arm, "budget": budget, "seed": seed, **score(model, sets.test, spec.device)}


def protocol(spec: UtilitySpec, sets: Sets, leakage: dict) -> dict:
    """What a replay needs: the spec, each set's source, size and content hash, the leak check."""
    return {"spec": spec.model_dump(mode="json"),
            "sets": {role: {"name": s.name, "source": s.source, "size": len(s),
                            "sha256": s.sha256()}
                     for role, s in (("real", sets.real), ("synthetic", sets.synthetic),
                                     ("test", sets.test))},
            "leakage": leakage, "model": f"ShapesChecker{tuple(spec.widths)} (class head)",
            "augmentations": "one random symmetry of the square per image"}


def load_sets(dataset: str | Path, real: str | Path | None, test: str | Path | None,
              spec: UtilitySpec) -> Sets:
    """The synthetic dataset, and the real pool and test set (dataset folders, or the embedded
    shapes-world scenes when None), checked for equal sizes."""
    synthetic = load_dataset(dataset)
    if spec.synthetic_size is not None:
        synthetic = synthetic.take(np.arange(min(spec.synthetic_size, len(synthetic))))
    need = max(spec.budgets) + len(synthetic)
    side = synthetic.images.shape[-1]
    real_set = (load_dataset(real) if real is not None
                else real_scenes(spec.real_seed, need, side, "real"))
    test_set = (load_dataset(test) if test is not None
                else real_scenes(spec.test_seed, spec.test_size, side, "test"))
    for s in (real_set, test_set):
        if s.images.shape[1:] != synthetic.images.shape[1:]:
            raise ValueError(f"{s.source}: images of {s.images.shape[2:]} px, the synthetic "
                             f"set's are {synthetic.images.shape[2:]}; use sets of one size")
    return Sets(real_set, synthetic, test_set)
