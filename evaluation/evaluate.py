"""Score a synthetic set against a reference: one feature pass per extractor, every figure with N
and an interval, overall and per group, written as long-form ``metrics.csv`` + ``metrics.json``.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from evaluation.config import EvalSpec
from augment.core.io import atomic_write_bytes, atomic_write_json, atomic_write_text
from augment.image.layout_types import Layout
from evaluation import fidelity as fd
from evaluation.image.extractors import (CheckerMaps, checker_extractor, clip_extractor,
                                            fidelity_extractor, shapes_world)
from evaluation.features import SetFeatures, compute_features
from evaluation.image.sets import ImageSet, open_image_set
from evaluation.stats import mean_ci, wilson_interval

log = logging.getLogger(__name__)

COLUMNS = ["dataset", "reference", "metric", "value", "ci_low", "ci_high", "n", "extractor",
           "group", "details"]


@dataclass
class Reference:
    """Reference features of the fidelity extractor (from a set or a stats file)."""

    name: str
    extractor: str
    weights: str
    features: np.ndarray
    groups: dict[str, list[int]] = field(default_factory=dict)
    files: list[str] | None = None  # image paths of the rows, when the reference is a set

    def stats(self, rows: list[int] | None = None) -> dict:
        return fd.statistics(self.features if rows is None else self.features[rows])


def save_reference(ref: Reference, path: str | Path) -> Path:
    """Write reference features + metadata to a ``.npz`` (no pickles)."""
    buf = io.BytesIO()
    meta = {"name": ref.name, "extractor": ref.extractor, "weights": ref.weights,
            "groups": ref.groups, "n": int(len(ref.features))}
    np.savez(buf, features=ref.features, meta=np.asarray(json.dumps(meta)))
    return atomic_write_bytes(path, buf.getvalue())


def load_reference_file(path: str | Path, extractor) -> Reference:
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


def reference_from_set(path: str | Path, spec: EvalSpec, extractor,
                       images: str | Path | None = None) -> tuple[Reference, SetFeatures]:
    ref_set = open_image_set(path, images or spec.reference_images, kept_only=False)
    feats = compute_features(ref_set, [extractor], spec.cache_dir)
    groups = _remap_groups(ref_set.groups, feats.rows)
    return (Reference(ref_set.name, extractor.name, extractor.weights,
                      feats.arrays[extractor.name]["features"], groups,
                      [str(ref_set.files[r]) for r in feats.rows]), feats)


def load_reference(path: str | Path, spec: EvalSpec, extractor) -> Reference:
    if str(path).endswith(".npz"):
        return load_reference_file(path, extractor)
    return reference_from_set(path, spec, extractor)[0]


def _remap_groups(groups: dict[str, list[int]], rows: np.ndarray) -> dict[str, list[int]]:
    """Group members as positions among the readable rows (unreadable files dropped)."""
    position = {int(r): i for i, r in enumerate(rows)}
    return {g: [position[m] for m in members if m in position] for g, members in groups.items()}


@dataclass
class EvalResult:
    figures: pd.DataFrame
    unreadable: list[tuple[str, str]]
    out_dir: Path | None = None
    image_set: ImageSet | None = None
    features: SetFeatures | None = None
    memorization: dict | None = None  # nearest training neighbours, for the report's examples


def evaluate_dataset(dataset: str | Path, spec: EvalSpec, reference: str | Path | None = None,
                     out_dir: str | Path | None = None) -> EvalResult:
    """All configured figures of ``dataset`` against ``reference`` (or ``spec.reference``)."""
    reference = reference or spec.reference
    gen_set = open_image_set(dataset, kept_only=spec.kept_only)
    maps = CheckerMaps() if "layout" in spec.metrics and shapes_world(gen_set) else None
    fid_ext = fidelity_extractor(spec, maps)
    extractors = [fid_ext]
    clip_ext = clip_extractor(spec, gen_set) if "clip" in spec.metrics else None
    if clip_ext:
        extractors.append(clip_ext)
    if maps is not None:  # layout fidelity on a shapes-world set
        extractors.append(checker_extractor(spec, maps))
    gen = compute_features(gen_set, extractors, spec.cache_dir)
    if maps is not None:
        maps.active = False  # the reference needs no layout maps
    ref = load_reference(reference, spec, fid_ext) if reference is not None else None
    key = _figures_key(gen_set, gen, ref, reference, spec, extractors)
    cached = _load_figures(spec.cache_dir, key)
    if cached is not None:
        table, memo = cached
        log.info("%s: figures from the cache (unchanged images, labels, reference and spec)",
                 gen_set.name)
    else:
        figures, memo = _all_figures(gen_set, gen, ref, fid_ext, clip_ext, spec)
        table = figures_table(figures, gen_set.name, str(reference) if reference else "", fid_ext.name)
        _save_figures(spec.cache_dir, key, table, memo)
    result = EvalResult(table, gen.unreadable, image_set=gen_set, features=gen, memorization=memo)
    if out_dir is not None:
        result.out_dir = write_metrics(table, out_dir, {"dataset": str(dataset),
                                                        "reference": str(reference or ""),
                                                        "spec": spec.model_dump(mode="json")})
    return result


def _all_figures(gen_set: ImageSet, gen: SetFeatures, ref: "Reference | None", fid_ext, clip_ext,
                 spec: EvalSpec) -> tuple[list, dict | None]:
    """Every configured figure from the features (no image is read here)."""
    groups = _remap_groups(gen_set.groups, gen.rows) if spec.per_group else {}
    figures, memo = [], None
    if ref is not None:
        figures += _fidelity_figures(gen.arrays[fid_ext.name], ref, groups, spec)
        memo_figs, memo = _reference_diversity(gen.arrays[fid_ext.name]["features"], ref, spec)
        figures += memo_figs
        if memo and "pairs" in memo:  # synthetic row -> its file, for the report's examples
            memo["pairs"] = [(str(gen_set.files[gen.rows[i]]), path, d)
                             for i, path, d in memo["pairs"]]
    elif set(spec.metrics) & {"fid", "kid", "prc", "fid_infinity"}:
        log.warning("no reference given: FID, KID and precision/recall are skipped")
    if "is" in spec.metrics:
        figures.append(fd.inception_score(gen.arrays[fid_ext.name]["logits"], spec.is_splits,
                                          spec.seed))
    if "diversity" in spec.metrics:
        figures += _diversity_figures(gen.arrays[fid_ext.name]["features"], groups, spec)
    if clip_ext:
        figures += _clip_figures(gen_set, gen, clip_ext.name, spec)
    if "shapes-checker" in gen.arrays:
        figures += layout_figures(gen_set, gen.rows, gen.arrays["shapes-checker"], spec)
    figures.append(fd.Figure("unreadable_images", float(len(gen.unreadable)), float("nan"),
                             float("nan"), len(gen_set), "all",
                             "; ".join(f"{f}: {why}" for f, why in gen.unreadable[:20])))
    return figures, memo


_FIGURES_VERSION = 1  # bump when a figure's computation changes: old cached tables then miss


def _figures_key(gen_set: ImageSet, gen: SetFeatures, ref: "Reference | None", reference,
                 spec: EvalSpec, extractors) -> str:
    """Everything the figures depend on: image contents (the feature key), labels, the reference's
    features, the weights of every extractor, and the spec (less where files go)."""
    digest = hashlib.blake2b(digest_size=16)
    spec_part = spec.model_dump(mode="json", exclude={"cache_dir", "reports_dir", "device",
                                                      "batch_size"})
    digest.update(json.dumps([_FIGURES_VERSION, gen.key, gen_set.name, str(reference or ""),
                              spec_part, [(e.name, e.weights) for e in extractors],
                              gen_set.captions, gen_set.layouts, gen_set.groups,
                              [str(f) for f in gen_set.files]], sort_keys=True).encode())
    if ref is not None:
        digest.update(np.ascontiguousarray(ref.features).tobytes())
        digest.update(json.dumps([ref.extractor, ref.weights, ref.groups, ref.files],
                                 sort_keys=True).encode())
    return digest.hexdigest()


def _figures_path(cache_dir: str | Path, key: str) -> Path:
    return Path(cache_dir) / "figures" / f"{key}.json"


def _load_figures(cache_dir: str | Path, key: str) -> tuple[pd.DataFrame, dict | None] | None:
    path = _figures_path(cache_dir, key)
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
        table = pd.DataFrame(data["table"], columns=data["columns"]).astype(data["dtypes"])
    except (OSError, ValueError, KeyError) as err:  # a damaged entry is a miss, never a crash
        log.warning("ignoring unreadable cached figures %s: %s", path, err)
        return None
    memo = data.get("memorization")
    if memo and "pairs" in memo:
        memo["pairs"] = [tuple(p) for p in memo["pairs"]]
    return table, memo


def _save_figures(cache_dir: str | Path, key: str, table: pd.DataFrame, memo: dict | None) -> None:
    def plain(x):
        if isinstance(x, (np.floating, np.integer)):
            return x.item()
        if isinstance(x, np.ndarray):
            return x.tolist()
        raise TypeError(f"not JSON serialisable: {type(x)}")

    data = {"columns": list(table.columns), "dtypes": {c: str(t) for c, t in table.dtypes.items()},
            "table": json.loads(table.to_json(orient="values", double_precision=15)),
            "memorization": json.loads(json.dumps(memo, default=plain)) if memo else None}
    atomic_write_json(_figures_path(cache_dir, key), data)


def _fidelity_figures(arrays: dict, ref: Reference, groups: dict[str, list[int]],
                      spec: EvalSpec) -> list[fd.Figure]:
    feats = arrays["features"]
    out = []
    targets = [("all", np.arange(len(feats)), None)]
    targets += [(g, np.asarray(m), ref.groups.get(g)) for g, m in sorted(groups.items())]
    ref_stats_all = ref.stats()
    size = min(spec.kid_subset_size, len(feats), len(ref.features))
    kernels = (fd.KidKernels(feats, ref.features) if "kid" in spec.metrics and fd.KidKernels.worth_it(
        len(feats), len(ref.features), size, spec.kid_subsets) else None)  # one set for every group
    for group, members, ref_rows in targets:
        if len(members) < spec.min_group_size:
            out.append(fd.Figure("fid", float("nan"), float("nan"), float("nan"), len(members),
                                 group, f"skipped: n={len(members)} < min_group_size "
                                        f"{spec.min_group_size}"))
            continue
        use_ref_group = ref_rows is not None and len(ref_rows) >= spec.min_group_size
        ref_feats = ref.features[ref_rows] if use_ref_group else ref.features
        ref_stats = fd.statistics(ref_feats) if use_ref_group else ref_stats_all
        against = f"reference group {group}" if use_ref_group else "whole reference"
        g = feats[members]
        rounds = spec.bootstrap_rounds if group == "all" else min(spec.bootstrap_rounds, 30)
        if "fid" in spec.metrics:
            f = fd.fid(g, ref_stats, len(ref_feats), rounds, spec.confidence, spec.seed, group)
            f.details += f"; against {against}"
            out.append(f)
        if "fid_infinity" in spec.metrics and group == "all":
            out.append(fd.fid_infinity(g, ref_stats, seed=spec.seed))
        if "kid" in spec.metrics:
            rows = (members, np.asarray(ref_rows) if use_ref_group else np.arange(len(ref.features)))
            k = fd.kid(g, ref_feats, spec.kid_subset_size, spec.kid_subsets, spec.seed, group,
                       kernels, rows)
            k.details += f"; against {against}"
            out.append(k)
        if "prc" in spec.metrics:
            out += fd.precision_recall(g, ref_feats, spec.prc_neighborhood, spec.confidence, group)
    return out


def _diversity_figures(feats: np.ndarray, groups: dict[str, list[int]],
                       spec: EvalSpec) -> list[fd.Figure]:
    """Vendi score and mean pairwise distance, overall and per group (N must match to compare)."""
    from evaluation.diversity import mean_pairwise_distance_figure, vendi_figure

    out = []
    targets = [("all", np.arange(len(feats)))] + [(g, np.asarray(m)) for g, m in sorted(groups.items())
                                                 if len(m) >= spec.min_group_size]
    for group, members in targets:
        rounds = min(spec.bootstrap_rounds, 50)
        out.append(vendi_figure(feats[members], group, rounds, spec.confidence, spec.seed))
        out.append(mean_pairwise_distance_figure(feats[members], group, rounds, spec.confidence,
                                                 spec.seed))
    return out


def _reference_diversity(feats: np.ndarray, ref: Reference,
                         spec: EvalSpec) -> tuple[list[fd.Figure], dict | None]:
    """Density/coverage against the reference; memorization and near duplicates with a line
    calibrated on real-vs-real distances: half of the reference is the bank, the other half the
    held-out real set (a real image is never a copy of another, so closer than that is suspect)."""
    from evaluation.diversity import density_coverage_figures, near_duplicate_figure
    from evaluation.memorization import calibrate_threshold, memorization, memorization_figure

    out, memo = [], None
    if "density_coverage" in spec.metrics and len(ref.features) > 5:
        out += density_coverage_figures(ref.features, feats, 5, min(spec.bootstrap_rounds, 200),
                                        spec.confidence, spec.seed)
    if "memorization" in spec.metrics and len(ref.features) >= 2 * spec.min_group_size:
        half = len(ref.features) // 2
        held_out, bank = ref.features[:half], ref.features[half:]
        threshold = calibrate_threshold(held_out, bank, spec.memorization_quantile)
        memo = memorization(feats, bank, threshold, top_k=16, confidence=spec.confidence)
        if ref.files:
            memo["pairs"] = [(int(i), ref.files[half + int(j)], float(d))
                             for i, j, d in memo["examples"]]
        figure = memorization_figure(memo)
        figure.details += (f"; bank = second half of the reference ({len(bank)}), line calibrated "
                           f"at the {spec.memorization_quantile:g} quantile of real-vs-real distances")
        out.append(figure)
        near = near_duplicate_figure(feats, 1.0 - threshold, spec.confidence)
        near.details += "; same calibrated line, within the synthetic set"
        out.append(near)
    return out, memo


def _clip_figures(gen_set: ImageSet, gen: SetFeatures, name: str, spec: EvalSpec) -> list[fd.Figure]:
    from augment.image.clip import TEMPLATE, zero_shot
    from evaluation.image.clip_alignment import clip_score, clip_score_100
    from augment.image.clip import encode_texts
    from evaluation.image.extractors import _clip

    model, _, tokenizer = _clip(spec.clip_model, spec.clip_checkpoint, spec.device)
    arrays = gen.arrays[name]
    out = []
    if gen_set.captions:
        captions = [gen_set.captions[r] for r in gen.rows]
        text = encode_texts(model, tokenizer, captions)
        for metric, scores, formula in (
                ("clip_score", clip_score(arrays["image"], text), "2.5 * max(cos, 0)"),
                ("clip_score_100", clip_score_100(arrays["image"], text), "100 * cos")):
            mean, lo, hi = mean_ci(scores, seed=spec.seed, confidence=spec.confidence)
            out.append(fd.Figure(metric, mean, lo, hi, len(scores), "all",
                                 f"CLIPScore (Hessel et al. 2021) = {formula}, image vs caption; "
                                 f"model {spec.clip_model}"))
    if gen_set.layouts and len(arrays["crops"]):
        layouts = [gen_set.layout(r) for r in arrays["crop_row"]]
        truth = [lay.instances[i].category for lay, i in zip(layouts, arrays["crop_instance"])]
        names = sorted(set(truth) | _categories(gen_set))
        text = encode_texts(model, tokenizer, [TEMPLATE.format(n) for n in names])
        scale = float(model.logit_scale.detach().exp())
        pred = np.asarray(names)[zero_shot(arrays["crops"], text, scale).argmax(1)]
        correct = pred == np.asarray(truth)
        out.append(_proportion("clip_crop_accuracy", correct, "all", spec,
                               f"zero-shot '{TEMPLATE}' over {len(names)} classes"))
        for cls in names:
            mask = np.asarray(truth) == cls
            if mask.sum() >= spec.min_group_size:
                out.append(_proportion("clip_crop_accuracy", correct[mask], f"class={cls}", spec,
                                       "zero-shot crop classification"))
    return out


def _categories(gen_set: ImageSet) -> set[str]:
    return {g.split("=", 1)[1] for g in gen_set.groups if g.startswith("class=")}


def _proportion(metric: str, correct: np.ndarray, group: str, spec: EvalSpec,
                details: str) -> fd.Figure:
    k, n = int(np.sum(correct)), int(len(correct))
    lo, hi = wilson_interval(k, n, spec.confidence)
    return fd.Figure(metric, k / n if n else float("nan"), lo, hi, n, group,
                     details + "; Wilson interval")


_CEILING_LAYOUTS = 64  # the ceiling is a reference point printed in details, not a figure


def layout_figures(gen_set: ImageSet, rows: np.ndarray, preds: dict, spec: EvalSpec) -> list[fd.Figure]:
    """Checker-based layout fidelity, with the checker's own score on real renders as ceiling."""
    from evaluation.image.layout_fidelity import box_recall, fidelity_from_predictions, real_scene_ceiling

    layouts = [gen_set.layout(r) for r in rows]
    figs = fidelity_from_predictions(preds["semantic"], preds["colour"], layouts)
    ceiling_n = min(len(layouts), _CEILING_LAYOUTS)
    ceiling = real_scene_ceiling(layouts[:ceiling_n])
    hits = box_recall(preds["semantic"], layouts)
    miou_lo, miou_hi = _bootstrap_miou(preds["semantic"], layouts, spec)
    out = [fd.Figure("layout_miou", figs["miou"], miou_lo, miou_hi, len(layouts), "all",
                     f"checker segmentation vs condition masks; checker on real renders of the first "
                     f"{ceiling_n} of these layouts (ceiling): {ceiling['miou']:.3f}")]
    colour_n = figs["n_coloured_instances"]
    if colour_n:
        k = round(figs["colour_accuracy"] * colour_n)
        lo, hi = wilson_interval(k, colour_n, spec.confidence)
        out.append(fd.Figure("layout_colour_accuracy", figs["colour_accuracy"], lo, hi, colour_n,
                             "all", f"instances with a specified colour; ceiling "
                                    f"{ceiling['colour_accuracy']:.3f}; Wilson interval"))
    out.append(_proportion("layout_box_recall_iou50", hits, "all", spec,
                           "condition boxes matched by a checker segment of the class at IoU>=0.5"))
    for name, iou in figs["per_class_iou"].items():
        if name != "background" and iou is not None and np.isfinite(iou):
            out.append(fd.Figure("layout_iou", float(iou), float("nan"), float("nan"),
                                 len(layouts), f"class={name}", "checker IoU of this class"))
    return out


def _bootstrap_miou(semantic: np.ndarray, layouts: list[Layout], spec: EvalSpec) -> tuple[float, float]:
    from augment.image.checker import confusion_matrix, miou_from_confusion
    from evaluation.stats import bootstrap_ci

    k = int(max(semantic.max(), max(l.semantic_map.max() for l in layouts))) + 1
    k = max(k, 6)
    confs = np.stack([confusion_matrix(semantic[i], layouts[i].semantic_map, k)
                      for i in range(len(layouts))])
    return bootstrap_ci(lambda idx: miou_from_confusion(confs[idx].sum(0))[0], len(layouts),
                        min(spec.bootstrap_rounds, 200), spec.confidence, spec.seed)


def figures_table(figures: list[fd.Figure], dataset: str, reference: str, extractor: str) -> pd.DataFrame:
    rows = [{"dataset": dataset, "reference": reference, "extractor": extractor, **asdict(f)}
            for f in figures]
    return pd.DataFrame(rows, columns=COLUMNS)


def write_metrics(table: pd.DataFrame, out_dir: str | Path, meta: dict) -> Path:
    out_dir = Path(out_dir)
    atomic_write_text(out_dir / "metrics.csv", table.to_csv(index=False))
    atomic_write_json(out_dir / "metrics.json", {
        **meta, "figures": json.loads(table.to_json(orient="records"))})
    return out_dir
