"""Settings of evaluation, bias audits and reports (``synthmill evaluate``, ``compare``, ``report``)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from augment.config.base import Strict, known
from evaluation.presets import PRESET_NAMES
from evaluation.registry import METRICS, selectable


class EvalSpec(Strict):
    """How a synthetic set is scored against a reference (``synthmill evaluate``)."""

    reference: str | None = Field(
        None, description="Reference: image folder, synthmill dataset, COCO .json or stats .npz.")
    reference_images: str | None = Field(None, description="Image folder of a COCO reference.")
    extractor: Literal["shapes-features", "inception-v3-compat"] = "shapes-features"
    extractor_weights: str | None = Field(
        None, description="Local .safetensors weights of the extractor (required for inception).")
    metrics: list[str] = Field(
        default_factory=lambda: METRICS.names(default=True), min_length=1,
        description="Metrics to compute (evaluation.registry.METRICS).")
    metric_settings: dict[str, dict] = Field(
        default_factory=dict, description="Settings of metrics that have their own settings "
        "model, by metric name.")
    memorization_quantile: float = Field(
        0.01, gt=0, lt=0.5, description="Real-vs-real nearest-neighbour distance quantile that "
        "calibrates the 'too close' line for memorization and near duplicates.")
    clip_model: str = Field("shapes-clip-tiny", description="open_clip architecture name.")
    clip_checkpoint: str | None = Field(None, description="Local open_clip checkpoint; None = embedded.")
    kid_subset_size: int = Field(1000, ge=2)
    kid_subsets: int = Field(100, ge=1)
    is_splits: int = Field(10, ge=1)
    prc_neighborhood: int = Field(3, ge=1)
    bootstrap_rounds: int = Field(100, ge=0, le=10_000)
    confidence: float = Field(0.95, gt=0.5, lt=1.0)
    seed: int = 0
    per_group: bool = True
    min_group_size: int = Field(32, ge=2, description="Smallest group that gets its own figures.")
    kept_only: bool = Field(True, description="Score only samples that passed verification.")
    device: str = "cpu"
    batch_size: int = Field(64, ge=1)
    cache_dir: str = Field(".cache/synthmill", description="Feature cache folder.")
    reports_dir: str = Field("reports", description="Reports go to <reports_dir>/<run-id>/.")

    @field_validator("metrics")
    @classmethod
    def _metrics(cls, value: list[str]) -> list[str]:
        return known("metric", value, selectable())

    @field_validator("metric_settings")
    @classmethod
    def _metric_settings(cls, value: dict[str, dict]) -> dict[str, dict]:
        """Each metric's settings through its own model (defaults filled in, so the figures cache
        key sees them)."""
        out = {}
        for name, settings in value.items():
            model = METRICS.get(name).settings_model()
            if model is None:
                raise ValueError(f"metric {name!r} has no settings of its own")
            out[name] = model.model_validate(settings).model_dump(mode="json")
        return out


class AuditSpec(Strict):
    """A bias audit of a dataset whose attribute was left to the generator: classify the attribute
    the generator chose, compare its distribution per group with a target."""

    dataset: str = Field(..., description="Name of the job (role: audit) whose dataset is audited.")
    preset: str = Field("shapes-colour", description="What is audited (evaluation.presets.PRESETS).")
    method: Literal["checker", "clip"] = Field(
        "checker", description="Who classifies the attribute: the shapes checker or zero-shot CLIP.")
    target: dict[str, float] | None = Field(None, description="Target distribution; None = uniform.")

    @field_validator("preset")
    @classmethod
    def _preset(cls, value: str) -> str:
        known("preset", [value], PRESET_NAMES)
        return value


class ReportSpec(Strict):
    """What the report shows."""

    title: str = "synthmill report"
    samples_per_class: int = Field(4, ge=0, le=32)
    memorization_examples: int = Field(6, ge=0, le=64)
