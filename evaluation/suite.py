"""Evaluate several datasets against one reference, audit, and write one report: the plain-library
steps the evaluate / compare / pipeline flows wire together."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from augment.core.versions import dataset_label, resolve_dataset
from evaluation.bias import audit_summary
from evaluation.config import AuditSpec, EvalSpec, ReportSpec
from evaluation.evaluate import evaluate_dataset, figures_table, write_metrics
from evaluation.plots import Picture, attribute_distribution
from evaluation.presets import display_colours
from evaluation.registry import MODALITIES
from evaluation.report import Section, write_report
from evaluation.sets import dataset_modality, file_modality


def evaluate_one(dataset: str | Path, spec: EvalSpec, reference: str | Path | None,
                 out_dir: str | Path) -> Path:
    """Evaluate one dataset into ``out_dir``: metrics.csv, metrics.json, and ``<metric>.json`` for
    each metric that leaves data for the report (memorization.json: the closest pairs)."""
    out_dir = Path(out_dir)
    result = evaluate_dataset(resolve_dataset(dataset), spec, reference, out_dir)
    for name, data in result.extras.items():
        (out_dir / f"{name}.json").write_text(json.dumps(data))
    return out_dir / "metrics.csv"


def audit_one(dataset: str | Path, spec: AuditSpec, eval_spec: EvalSpec, out_dir: str | Path) -> Path:
    """Bias audit of ``dataset`` into ``out_dir`` (metrics.csv rows + distribution.csv)."""
    dataset = resolve_dataset(dataset)
    hooks = MODALITIES.get(dataset_modality(dataset)).load_hooks()
    figures, distribution, audits = hooks.audit(Path(dataset), spec, eval_spec)
    out_dir = Path(out_dir)
    table = figures_table(figures, dataset_label(dataset), "", f"audit:{spec.method}")
    write_metrics(table, out_dir, {"dataset": str(dataset), "audit": spec.model_dump(mode="json"),
                                   "summary": audit_summary(audits)})
    distribution.to_csv(out_dir / "distribution.csv", index=False)
    (out_dir / "audit.txt").write_text(audit_summary(audits) + "\n")
    return out_dir / "metrics.csv"


def report(metrics_files: list[str | Path], datasets: list[str | Path], out_dir: str | Path,
           spec: ReportSpec, run_info: dict | None = None) -> dict[str, Path]:
    """Merge per-dataset metrics into ``out_dir/metrics.csv`` and write summary.md + report.html."""
    out_dir = Path(out_dir)
    datasets = [resolve_dataset(d) for d in datasets]
    table = pd.concat([pd.read_csv(f) for f in metrics_files], ignore_index=True)
    write_metrics(table, out_dir, {"datasets": [str(d) for d in datasets],
                                   "parts": [str(f) for f in metrics_files]})
    sections = []
    for f in metrics_files:
        folder = Path(f).parent
        if (folder / "distribution.csv").exists():
            sections.append(_audit_section(folder))
        if (folder / "memorization.json").exists() and spec.memorization_examples:
            sections.append(_memorization_section(folder, spec.memorization_examples))
    return write_report(out_dir, table, [Path(d) for d in datasets], title=spec.title,
                        sections=sections, run_info=run_info,
                        samples_per_class=spec.samples_per_class)


def _audit_section(folder: Path) -> Section:
    dist = pd.read_csv(folder / "distribution.csv")
    picture = Picture(attribute_distribution(dist, colours=display_colours()),
                      "share of each value per group")
    return Section(f"Bias audit ({folder.name}): attribute left to the generator",
                   text=(folder / "audit.txt").read_text(), table=dist, images=[picture])


def _memorization_section(folder: Path, examples: int) -> Section:
    """The closest generated/reference pairs, drawn by their files' modality."""
    memo = json.loads((folder / "memorization.json").read_text())
    pictures = []
    for gen_path, train_path, dist in memo["pairs"][:examples]:
        flag = "FLAGGED" if dist < memo["threshold"] else "not flagged"
        pictures += [Picture(_preview(gen_path), f"generated {Path(gen_path).name}"),
                     Picture(_preview(train_path),
                             f"nearest reference {Path(train_path).name}: distance "
                             f"{dist:.4f} ({flag}; line {memo['threshold']:.4f})")]
    return Section(f"Closest pairs to the reference ({folder.name})",
                   text="Generated samples nearest to a reference image; a pair closer than the "
                        "calibrated line counts as memorized.",
                   images=pictures, columns=2)


def _preview(path: str) -> bytes:
    return MODALITIES.get(file_modality(path)).load_hooks().preview(Path(path))
