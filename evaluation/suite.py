"""Evaluate several datasets against one reference, audit, and write one report: the plain-library
steps the evaluate / compare / pipeline flows wire together."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from augment.core.versions import dataset_label, resolve_dataset
from evaluation.bias import audit_line
from evaluation.config import AuditSpec, EvalSpec, ReportSpec
from evaluation.evaluate import evaluate_dataset, figures_table, write_metrics
from evaluation.plots import Picture, attribute_distribution
from evaluation.presets import display_colours
from evaluation.registry import MODALITIES
from evaluation.headline import Verdict
from evaluation.report import Section, write_report
from evaluation.sets import dataset_modality, file_modality

AUDIT_VERDICTS = "audit.json"


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
    return write_audit(out_dir, dataset_label(dataset), figures, distribution, audits,
                       {"dataset": str(dataset), "audit": spec.model_dump(mode="json")},
                       spec.method)


def write_audit(out_dir: str | Path, label: str, figures: list, distribution: pd.DataFrame,
                audits: list, about: dict, method: str) -> Path:
    """An audit's files in ``out_dir``: its figures (metrics.csv, metrics.json with ``about``),
    distribution.csv, audit.txt (one line per group, for people) and audit.json (each group's
    verdict, which the report reads: ``audit_verdicts``); the path of metrics.csv."""
    out_dir = Path(out_dir)
    verdicts = [{"group": str(a.group), "flagged": bool(a.flagged), "text": audit_line(a)}
                for a in audits]
    summary = "\n".join(v["text"] for v in verdicts)
    table = figures_table(figures, label, "", f"audit:{method}")
    write_metrics(table, out_dir, {**about, "summary": summary})
    distribution.to_csv(out_dir / "distribution.csv", index=False)
    (out_dir / "audit.txt").write_text(summary + "\n")
    (out_dir / AUDIT_VERDICTS).write_text(json.dumps({"groups": verdicts}, indent=1))
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
        if (folder / "utility.json").exists():
            sections.append(_utility_section(folder))
        if (folder / "distribution.csv").exists():
            sections.append(_audit_section(folder))
        if (folder / "memorization.json").exists() and spec.memorization_examples:
            sections.append(_memorization_section(folder, spec.memorization_examples))
    return write_report(out_dir, table, [Path(d) for d in datasets], title=spec.title,
                        sections=sections, run_info=run_info,
                        samples_per_class=spec.samples_per_class)


def _utility_section(folder: Path) -> Section:
    """Learning curve, the gain of each arm over real-only, and the protocol of a utility study."""
    from evaluation.utility import GAINS, headline

    table = pd.read_csv(folder / "metrics.csv")
    about = json.loads((folder / "utility.json").read_text())
    spec = about["spec"]
    gains = table[table["metric"].isin(GAINS.values()) & (table["group"] != "all")]
    text = (f"Train on real (and synthetic), test on held-out real: {spec['steps']} steps, "
            f"batch {spec['batch_size']}, {spec['seeds']} seeds per arm, "
            f"{about['model']}, {about['augmentations']}. Sets: "
            + "; ".join(f"{role} {s['source']} ({s['size']} images, sha256 {s['sha256'][:12]})"
                        for role, s in about["sets"].items())
            + ". Gains over real-only at the same budget, paired by seed (a tie: the "
            f"{int(spec['confidence'] * 100)}% interval crosses 0):\n\n"
            + headline(table).replace("\n", "\n\n"))
    picture = Picture((folder / "learning_curve.png").read_bytes(), "test figures vs real budget")
    return Section(f"Utility ({folder.name}): does the synthetic set help?", text=text,
                   table=gains[["metric", "group", "value", "ci_low", "ci_high", "n", "details"]],
                   images=[picture], with_figures=True)


def audit_verdicts(folder: Path) -> list[Verdict] | None:
    """The verdict of each group of the audit in ``folder`` (its audit.json, ``write_audit``);
    None for an audit folder written before synthmill recorded them."""
    path = folder / AUDIT_VERDICTS
    if not path.exists():
        return None
    groups = json.loads(path.read_text())["groups"]
    return [Verdict(folder.name, g["group"], g["flagged"], g["text"]) for g in groups]


def _audit_section(folder: Path) -> Section:
    dist = pd.read_csv(folder / "distribution.csv")
    verdicts = audit_verdicts(folder)
    flagged = [v.group for v in verdicts or [] if v.flagged]
    text = (f"{len(flagged)} of {len(verdicts)} groups flagged as skewed." if verdicts is not None
            else f"No verdicts: {folder / AUDIT_VERDICTS} is missing (an audit written by an "
                 "older synthmill); run the audit again to have them.")
    picture = Picture(attribute_distribution(dist, colours=display_colours(), flagged=flagged),
                      "share of each value per group" + ("; flagged groups shaded red"
                                                         if flagged else ""))
    return Section(f"Bias audit ({folder.name}): attribute left to the generator", text=text,
                   table=dist, images=[picture], verdicts=verdicts or [], with_figures=True)


def _memorization_section(folder: Path, examples: int) -> Section:
    """The closest generated/reference pairs, drawn by their files' modality; generated samples
    named as metrics.csv names them (by sample id), reference samples by file name."""
    memo = json.loads((folder / "memorization.json").read_text())
    pictures = []
    for pair in _pairs(memo)[:examples]:
        flag = "FLAGGED" if pair["distance"] < memo["threshold"] else "not flagged"
        pictures += [Picture(_preview(pair["file"]), f"generated {pair['sample']}"),
                     Picture(_preview(pair["reference_file"]),
                             f"nearest reference {pair['reference']}: distance "
                             f"{pair['distance']:.4f} ({flag}; line {memo['threshold']:.4f})")]
    flagged = memo.get("flagged", [])
    text = ("Generated samples nearest to a reference sample; a pair closer than the calibrated "
            "line counts as memorized. "
            + (f"Flagged ({len(flagged)}): {', '.join(flagged)}." if flagged
               else "None flagged." if "flagged" in memo else ""))
    return Section(f"Closest pairs to the reference ({folder.name})", text=text,
                   images=pictures, columns=2)


def _pairs(memo: dict) -> list[dict]:
    """The closest pairs of a memorization.json; one written before pairs were named (a list of
    [file, reference file, distance]) names both sides by file name."""
    return [pair if isinstance(pair, dict) else
            {"sample": Path(pair[0]).name, "file": pair[0], "reference": Path(pair[1]).name,
             "reference_file": pair[1], "distance": pair[2]} for pair in memo["pairs"]]


def _preview(path: str) -> bytes:
    return MODALITIES.get(file_modality(path)).load_hooks().preview(Path(path))


def report_names(datasets: list[str | Path]) -> list[str]:
    """Each dataset's folder name in a report (``series@vNNNN`` for a version); they must differ."""
    names = [dataset_label(d) for d in datasets]
    if len(set(names)) != len(names):
        raise ValueError(f"datasets to compare need distinct folder names, got {names}")
    return names


def evaluate_and_report(datasets: list[str | Path], spec: EvalSpec, reference: str | Path | None,
                        out_dir: str | Path, report_spec: ReportSpec,
                        run_info: dict | None = None) -> dict[str, str]:
    """Evaluate each dataset into ``out_dir/<name>`` and write the merged report: the steps of the
    evaluate and compare flows as plain calls (what a one-off command runs with no Prefect server
    configured). Returns the paths of metrics.csv, summary.md and report.html."""
    parts = [evaluate_one(d, spec, reference, Path(out_dir) / name)
             for d, name in zip(datasets, report_names(datasets))]
    paths = report(parts, datasets, out_dir, report_spec, run_info)
    return {"metrics": str(Path(out_dir) / "metrics.csv"), **{k: str(v) for k, v in paths.items()}}
