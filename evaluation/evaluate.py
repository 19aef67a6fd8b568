"""Score a set against a reference: the registered metrics (``evaluation.registry``) over one feature
pass per extractor, every figure with N and an interval, overall and per group, written as
long-form ``metrics.csv`` + ``metrics.json``.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd

from augment.core.io import atomic_write_json, atomic_write_text
from evaluation.config import EvalSpec
from evaluation.features import ExtractorPlan, SetFeatures, compute_features
from evaluation.figures import COLUMNS, Figure
from evaluation.inputs import MetricInputs
from evaluation.reference import Reference, load_reference, readable_groups
from evaluation.registry import MODALITIES, Metric, chosen
from evaluation.sets import SampleSet, open_set

log = logging.getLogger(__name__)


@dataclass
class EvalResult:
    figures: pd.DataFrame
    unreadable: list[tuple[str, str]]
    out_dir: Path | None = None
    sample_set: SampleSet | None = None
    features: SetFeatures | None = None
    extras: dict = field(default_factory=dict)  # by metric, for the report (``MetricInputs``)


def evaluate_dataset(dataset: str | Path, spec: EvalSpec, reference: str | Path | None = None,
                     out_dir: str | Path | None = None) -> EvalResult:
    """All configured figures of ``dataset`` against ``reference`` (or the spec's reference of
    the dataset's modality, ``EvalSpec.reference_for``)."""
    # 1. The set (its modality supplies the reader), the metrics and the extractors they need
    sample_set = open_set(dataset, kept_only=spec.kept_only)
    reference = reference or spec.reference_for(sample_set.modality)
    metrics = chosen(spec.metrics)
    plan = MODALITIES.get(sample_set.modality).load_hooks().extractors(
        spec, sample_set, {need for m in metrics for need in m.needs})
    # 2. Features of the reference, then of the set (a reference too small is refused first)
    ref = (load_reference(reference, spec, plan.reference(), sample_set.modality)
           if reference is not None else None)
    if ref is not None:
        _check_size("reference", reference, len(ref.features))
    gen = compute_features(sample_set, plan.extractors(), spec.cache_dir)
    _check_size("dataset", dataset, len(gen.rows))
    # 3. Figures: from the cache, or computed by each metric from the features
    key = _figures_key(sample_set, gen, ref, reference, spec, plan, metrics)
    cached = _load_figures(spec.cache_dir, key)
    if cached is not None:
        table, extras = cached
        log.info("%s: figures from the cache (unchanged files, labels, reference and spec)",
                 sample_set.name)
    else:
        inputs = MetricInputs(spec, sample_set, gen,
                              {need: e.name for need, e in plan.by_need.items()}, ref,
                              readable_groups(sample_set.groups, gen.rows) if spec.per_group else {})
        table = figures_table(run_metrics(metrics, inputs), sample_set.name,
                              str(reference) if reference else "", plan.by_need["fidelity"].name)
        extras = inputs.extras
        _save_figures(spec.cache_dir, key, table, extras)
    # 4. Write
    result = EvalResult(table, gen.unreadable, sample_set=sample_set, features=gen, extras=extras)
    if out_dir is not None:
        result.out_dir = write_metrics(table, out_dir, {"dataset": str(dataset),
                                                        "reference": str(reference or ""),
                                                        "spec": spec.model_dump(mode="json")})
    return result


MIN_SET_SIZE = 2  # a covariance (FID) and an unbiased MMD (KID) need two samples


def _check_size(what: str, path, n: int) -> None:
    """ValueError naming the set when it has too few readable samples for any figure."""
    if n < MIN_SET_SIZE:
        raise ValueError(f"{what} {path}: {n} readable sample(s); evaluation needs at least "
                         f"{MIN_SET_SIZE} in each set (figures are only worth reading from a few "
                         f"dozen up; FID is biased below 2048)")


NEED_HINTS = {"reference": "set evaluate.reference or add a job with role: reference",
              "clap": "set evaluate.clap_model to a local CLAP checkpoint folder",
              "checker": "shapes-world sets only"}
"""What a user can do about a need a metric names (the skip message says it)."""

OPTIONAL_NEEDS = {"clap"}
"""Needs met only by a model the user chooses to give (no embedded CLAP): a metric skipped for
them alone is said at INFO level, not warned about on every run of the embedded default."""


def run_metrics(metrics: list[Metric], inputs: MetricInputs) -> list[Figure]:
    """Every metric's figures, in order; a metric whose needs are not met is skipped and named."""
    met = set(inputs.extractors) | {inputs.sample_set.modality} | (
        {"reference"} if inputs.reference is not None else set())
    figures, unmet, optional = [], [], []
    for metric in metrics:
        missing = [need for need in metric.needs if need not in met]
        if any(need in MODALITIES for need in missing):
            continue  # a metric of another modality
        if missing:
            (optional if set(missing) <= OPTIONAL_NEEDS else unmet).append(
                f"{metric.name} (needs " + ", ".join(
                    f"{n}: {NEED_HINTS[n]}" if n in NEED_HINTS else n for n in missing) + ")")
            continue
        model = metric.settings_model()
        settings = (model.model_validate(inputs.spec.metric_settings.get(metric.name, {}))
                    if model is not None else None)
        figures += metric.run(replace(inputs, settings=settings))
    if unmet:
        log.warning("%s: skipped %s", inputs.sample_set.name, "; ".join(unmet))
    if optional:
        log.info("%s: skipped %s", inputs.sample_set.name, "; ".join(optional))
    return figures


def score_unreadable(inputs: MetricInputs, figure: str = "unreadable_images") -> list[Figure]:
    """How many of the set's files could not be read or decoded, the first 20 named."""
    bad = inputs.features.unreadable
    return [Figure(figure, float(len(bad)), float("nan"), float("nan"),
                   len(inputs.sample_set), "all", "; ".join(f"{f}: {why}" for f, why in bad[:20]))]


def score_unreadable_audio(inputs: MetricInputs) -> list[Figure]:
    """``score_unreadable`` of an audio set."""
    return score_unreadable(inputs, "unreadable_audio")


_FIGURES_VERSION = 3  # bump when a figure's computation changes: old cached tables then miss


def _figures_key(sample_set: SampleSet, gen: SetFeatures, ref: Reference | None, reference,
                 spec: EvalSpec, plan: ExtractorPlan, metrics: list[Metric]) -> str:
    """Everything the figures depend on: file contents (the feature key), labels, the reference's
    features, the weights of every extractor, the metrics run and the spec (less where files go)."""
    digest = hashlib.blake2b(digest_size=16)
    spec_part = spec.model_dump(mode="json", exclude={"cache_dir", "reports_dir", "device",
                                                      "batch_size"})
    digest.update(json.dumps([_FIGURES_VERSION, gen.key, sample_set.name, str(reference or ""),
                              spec_part, [(e.name, e.weights) for e in plan.by_need.values()],
                              [m.name for m in metrics], sample_set.labels(),
                              [str(f) for f in sample_set.files]], sort_keys=True).encode())
    if ref is not None:
        digest.update(np.ascontiguousarray(ref.features).tobytes())
        digest.update(json.dumps([ref.extractor, ref.weights, ref.groups, ref.files],
                                 sort_keys=True).encode())
    return digest.hexdigest()


def _figures_path(cache_dir: str | Path, key: str) -> Path:
    return Path(cache_dir) / "figures" / f"{key}.json"


def _load_figures(cache_dir: str | Path, key: str) -> tuple[pd.DataFrame, dict] | None:
    path = _figures_path(cache_dir, key)
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
        table = pd.DataFrame(data["table"], columns=data["columns"]).astype(data["dtypes"])
    except (OSError, ValueError, KeyError) as err:  # a damaged entry is a miss, never a crash
        log.warning("ignoring unreadable cached figures %s: %s", path, err)
        return None
    return table, data.get("extras", {})


def _save_figures(cache_dir: str | Path, key: str, table: pd.DataFrame, extras: dict) -> None:
    def plain(x):
        if isinstance(x, (np.floating, np.integer)):
            return x.item()
        if isinstance(x, np.ndarray):
            return x.tolist()
        raise TypeError(f"not JSON serialisable: {type(x)}")

    data = {"columns": list(table.columns), "dtypes": {c: str(t) for c, t in table.dtypes.items()},
            "table": json.loads(table.to_json(orient="values", double_precision=15)),
            "extras": json.loads(json.dumps(extras, default=plain))}
    atomic_write_json(_figures_path(cache_dir, key), data)


def figures_table(figures: list[Figure], dataset: str, reference: str, extractor: str) -> pd.DataFrame:
    rows = [{"dataset": dataset, "reference": reference, "extractor": extractor, **asdict(f)}
            for f in figures]
    return pd.DataFrame(rows, columns=COLUMNS)


def write_metrics(table: pd.DataFrame, out_dir: str | Path, meta: dict) -> Path:
    out_dir = Path(out_dir)
    atomic_write_text(out_dir / "metrics.csv", table.to_csv(index=False))
    atomic_write_json(out_dir / "metrics.json", {
        **meta, "figures": json.loads(table.to_json(orient="records"))})
    return out_dir
