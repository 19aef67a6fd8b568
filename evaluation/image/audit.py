"""Bias audit of an image dataset whose attribute was left to the generator.

Shapes preset ("colour given shape"): every instance of the audit dataset has its colour
unspecified; the colour the generator chose is classified either by the shapes checker (already
done during generation's verification and stored in the manifest, ``colour_source == "checker"``)
or zero-shot by CLIP on the instance crop. The distribution per shape is then compared with the
target (uniform) by ``evaluation.bias``.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from evaluation.bias import GroupAudit, audit_attribute, bias_figures, distribution_frame
from evaluation.config import AuditSpec, EvalSpec
from evaluation.figures import Figure
from evaluation.image.sets import open_dataset
from evaluation.presets import PRESETS


def unspecified_instances(dataset: str | Path) -> pd.DataFrame:
    """Instances whose colour the generator chose: columns row, instance, group, colour (checker)."""
    manifest = pd.read_parquet(Path(dataset) / "manifest.parquet")
    manifest = manifest[manifest["status"] != "failed"].reset_index(drop=True)
    rows = []
    for r, text in enumerate(manifest["instances"]):
        for k, inst in enumerate(json.loads(text)):
            if inst["colour_source"] in ("checker", None):
                rows.append({"row": r, "instance": k, "group": inst["category"],
                             "colour": inst["colour"] if inst["colour_source"] else None})
    return pd.DataFrame(rows, columns=["row", "instance", "group", "colour"])


def _clip_colours(dataset: Path, instances: pd.DataFrame, eval_spec: EvalSpec,
                  values: tuple[str, ...], prompts: tuple[str, ...]) -> list[str]:
    """Zero-shot colour of each instance crop (CLIP features from the evaluation cache)."""
    # open_clip is imported only for audits that classify with CLIP
    from evaluation.image.clip_alignment import zero_shot_crops

    predicted = zero_shot_crops(open_dataset(dataset, kept_only=False), eval_spec, list(prompts))
    return [values[predicted[(r, i)]] if (r, i) in predicted else None
            for r, i in zip(instances["row"], instances["instance"])]


def run_audit(dataset: str | Path, spec: AuditSpec,
              eval_spec: EvalSpec) -> tuple[list[Figure], pd.DataFrame, list[GroupAudit]]:
    """(figures, distribution DataFrame, audits) of the preset's attribute within each group."""
    spec.check_modality("image", str(dataset))
    preset = PRESETS[spec.preset]
    attribute = preset.attributes[0]
    instances = unspecified_instances(dataset)
    if spec.method == "clip":
        instances["colour"] = _clip_colours(Path(dataset), instances, eval_spec, attribute.values,
                                            attribute.prompts)
    instances = instances.dropna(subset=["colour"])
    if instances.empty:
        raise ValueError(f"{dataset}: no instance with an unspecified {attribute.name} to audit; "
                         "generate the audit set with layout.colour_unspecified: 1.0")
    audits = audit_attribute(instances["group"].tolist(), instances["colour"].tolist(),
                             attribute.values, spec.target, attribute.name,
                             confidence=eval_spec.confidence, seed=eval_spec.seed)
    figures = bias_figures(audits)
    for f in figures:
        f.details += f"; classified by {spec.method}"
    return figures, distribution_frame(audits), audits
