"""Run a bias audit on a generated dataset whose attribute was left to the generator.

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

from evaluation.config import AuditSpec, EvalSpec
from evaluation.bias import audit_attribute, bias_figures, distribution_frame
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
    from augment.image.clip import zero_shot
    from augment.image.clip import encode_texts
    from evaluation.image.extractors import _clip, clip_extractor
    from evaluation.features import compute_features
    from evaluation.image.sets import open_image_set

    image_set = open_image_set(dataset, kept_only=False)
    extractor = clip_extractor(eval_spec, image_set)
    arrays = compute_features(image_set, [extractor], eval_spec.cache_dir).arrays[extractor.name]
    model, _, tokenizer = _clip(eval_spec.clip_model, eval_spec.clip_checkpoint, eval_spec.device)
    probs = zero_shot(arrays["crops"], encode_texts(model, tokenizer, list(prompts)),
                      float(model.logit_scale.exp()))
    predicted = {(int(r), int(i)): values[p] for r, i, p in
                 zip(arrays["crop_row"], arrays["crop_instance"], probs.argmax(1))}
    return [predicted.get((r, i)) for r, i in zip(instances["row"], instances["instance"])]


def run_audit(dataset: str | Path, spec: AuditSpec, eval_spec: EvalSpec):
    """(figures, distribution DataFrame, audits) of the preset's attribute within each group."""
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


def audit_summary(audits) -> str:
    """One line per group: flagged or not, and the most over-represented value."""
    lines = []
    for a in audits:
        state = "SKEWED" if a.flagged else "no skew found"
        lines.append(f"{a.group}: {state} (n={a.n}; most frequent {a.attribute} "
                     f"{a.top_value} at {a.top_share:.0%}, p={a.p_value:.3g})")
    return "\n".join(lines)

