"""Settings of evaluation, bias audits and reports (``synthmill evaluate``, ``compare``, ``report``)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from augment.config.base import Strict, known
from evaluation.presets import AUDIT_METHODS, PRESET_NAMES, PRESETS
from evaluation.registry import METRICS, selectable

_AUDIT_METHOD_NAMES = tuple(m for methods in AUDIT_METHODS.values() for m in methods)


class EvalSpec(Strict):
    """How a synthetic set is scored against a reference (``synthmill evaluate``)."""

    reference: str | None = Field(
        None, description="Reference: image folder, synthmill dataset, COCO .json or stats .npz.")
    reference_images: str | None = Field(None, description="Image folder of a COCO reference.")
    audio_reference: str | None = Field(
        None, description="Reference of audio datasets: folder of .wav/.flac files, synthmill "
        "audio dataset or stats .npz (``reference`` is that of image datasets).")
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
    audio_extractor: Literal["tones-classifier", "clap"] = Field(
        "tones-classifier", description="Clip embedding of audio fidelity figures (FAD, KID, "
        "precision/recall, diversity, memorization): the embedded tones classifier's penultimate "
        "features, or CLAP audio embeddings (needs clap_model).")
    clap_model: str | None = Field(
        None, description="Local folder of a LAION CLAP checkpoint (transformers ClapModel, "
        "safetensors): CLAPScore and zero-shot class accuracy of audio sets; None = not scored.")
    event_window: float = Field(0.4, ge=0.2, le=2.048,
                                description="Audio event detector: window of the sliding tones "
                                "classifier, seconds.")
    event_hop: float = Field(0.1, gt=0.0, le=1.0, description="Audio event detector: hop, seconds.")
    event_threshold: float = Field(0.5, gt=0.0, lt=1.0, description="Audio event detector: a "
                                   "class is active where its mean window probability exceeds this.")
    event_collar: float = Field(0.2, gt=0.0, le=1.0, description="Onset collar (seconds) of event "
                                "F1 (sed_eval event-based; DCASE uses 0.2).")
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

    @model_validator(mode="after")
    def _audio(self) -> "EvalSpec":
        if self.audio_extractor == "clap" and not self.clap_model:
            raise ValueError("clap_model: audio_extractor clap needs a local folder of a CLAP "
                             "checkpoint; set it, or set audio_extractor: tones-classifier")
        if self.event_hop > self.event_window:
            raise ValueError(f"event_hop: {self.event_hop} s exceeds event_window "
                             f"{self.event_window} s (the detector would skip audio)")
        return self

    def reference_for(self, modality: str) -> str | None:
        """The configured reference of ``modality`` datasets (``audio_reference`` for audio)."""
        return self.audio_reference if modality == "audio" else self.reference

    def input_paths(self) -> dict[str, str]:
        """The local files and folders these settings name, by field (checked before a run)."""
        fields = ("reference", "reference_images", "audio_reference", "extractor_weights",
                  "clip_checkpoint", "clap_model")
        return {name: getattr(self, name) for name in fields if getattr(self, name) is not None}


class AuditSpec(Strict):
    """A bias audit of a dataset whose attribute was left to the generator: classify the attribute
    the generator chose, compare its distribution per group with a target. The preset says which
    modality it audits and so which methods may classify (``evaluation.presets.AUDIT_METHODS``)."""

    dataset: str = Field(..., description="Name of the job (role: audit) whose dataset is audited.")
    preset: str = Field("shapes-colour", description="What is audited (evaluation.presets.PRESETS).")
    method: Literal[_AUDIT_METHOD_NAMES] = Field(
        "checker", description="Who classifies the attribute. Image presets: checker (the shapes "
        "checker) or clip (zero-shot CLIP); audio presets: classifier (the embedded tones "
        "classifier) or clap (zero-shot CLAP). Unset: the first of its preset's modality.")
    target: dict[str, float] | None = Field(None, description="Target distribution; None = uniform.")
    clap_model: str | None = Field(
        None, description="clap: local folder of a CLAP checkpoint (transformers ClapModel).")

    @model_validator(mode="before")
    @classmethod
    def _default_method(cls, data):
        """An unset method is the preset modality's default (checker for images, classifier for
        audio)."""
        if isinstance(data, dict) and "method" not in data:
            preset = PRESETS.get(data.get("preset", cls.model_fields["preset"].default))
            if preset is not None:
                data = {**data, "method": AUDIT_METHODS[preset.modality][0]}
        return data

    @field_validator("preset")
    @classmethod
    def _preset(cls, value: str) -> str:
        known("preset", [value], PRESET_NAMES)
        return value

    @model_validator(mode="after")
    def _method_fits(self) -> "AuditSpec":
        modality = PRESETS[self.preset].modality
        allowed = AUDIT_METHODS[modality]
        if self.method not in allowed:
            raise ValueError(f"method: {self.method!r} cannot classify preset {self.preset!r} "
                             f"({modality} datasets); allowed: {list(allowed)}")
        if self.method == "clap" and not self.clap_model:
            raise ValueError("clap_model: method clap needs a local folder of a CLAP checkpoint; "
                             "set it, or set method: classifier")
        return self

    def check_modality(self, modality: str, dataset: str) -> None:
        """ValueError naming ``preset`` unless the preset audits ``modality`` datasets, which
        ``dataset`` is."""
        audited = PRESETS[self.preset].modality
        if audited != modality:
            raise ValueError(f"preset: {self.preset!r} audits {audited} datasets, not {modality} "
                             f"ones like {dataset}")


class ReportSpec(Strict):
    """What the report shows."""

    title: str = "synthmill report"
    samples_per_class: int = Field(4, ge=0, le=32)
    memorization_examples: int = Field(6, ge=0, le=64)


UTILITY_ARMS = ("real", "real+synthetic", "synthetic", "more-real")


class UtilitySpec(Strict):
    """The protocol of ``synthmill utility``: does adding a synthetic set help a model trained on
    real data? Every arm trains the same segmenter from scratch with the same optimiser, steps,
    batch size and augmentations; only the training images differ."""

    budgets: list[int] = Field([50, 200], min_length=1,
                               description="Real training images per arm (a learning curve).")
    arms: list[str] = Field(default_factory=lambda: list(UTILITY_ARMS), min_length=1,
                            description="real (real budget only), real+synthetic (the budget plus "
                                        "the synthetic set), synthetic (synthetic only), more-real "
                                        "(the budget plus as many real images as synthetic ones).")
    seeds: int = Field(3, ge=2, le=20, description="Training seeds per arm (intervals need 2+).")
    seed: int = Field(0, ge=0, description="First seed; seed s picks the real subset and the "
                                           "weights of run s.")
    steps: int = Field(300, ge=20, description="Optimiser steps of every run (20 or more: the "
                                               "one-cycle warm-up needs 2).")
    batch_size: int = Field(32, ge=1)
    learning_rate: float = Field(3e-3, gt=0)
    synthetic_ratio: float = Field(0.5, gt=0, lt=1,
                                   description="Share of each real+synthetic batch drawn from the "
                                               "synthetic set.")
    synthetic_size: int | None = Field(None, ge=1, description="Synthetic images used (None: all "
                                                               "kept samples of the dataset).")
    widths: tuple[int, ...] = Field((16, 32, 48), min_length=2,
                                    description="Channels per level of the segmenter (the shapes "
                                                "checker's architecture).")
    test_size: int = Field(300, ge=10, description="Real test scenes of the embedded default.")
    real_seed: int = Field(1_000, ge=0, description="Scene seed of the embedded real pool.")
    test_seed: int = Field(2_000, ge=0, description="Scene seed of the embedded test set.")
    resolution: int = Field(64, ge=16, description="Side of the embedded real scenes.")
    confidence: float = Field(0.95, gt=0, lt=1)
    leakage_quantile: float = Field(
        0.01, gt=0, lt=1, description="Near duplicates of test images: a training or synthetic "
                                      "image closer than this quantile of test-vs-test neighbour "
                                      "distances (memorization features) whose pixels are also "
                                      "close is a leak.")
    device: str = "cpu"

    @field_validator("arms")
    @classmethod
    def _arms(cls, value: list[str]) -> list[str]:
        known("arm", value, UTILITY_ARMS)
        if "real" not in value:
            raise ValueError("the arm 'real' is the baseline every gain is measured against")
        return value

    @field_validator("budgets")
    @classmethod
    def _budgets(cls, value: list[int]) -> list[int]:
        if any(b < 1 for b in value) or len(set(value)) != len(value):
            raise ValueError(f"need distinct budgets >= 1, got {value}")
        return sorted(value)
