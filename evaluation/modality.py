"""What a modality supplies to evaluation (``evaluation.registry.MODALITIES``): the slots image
fills today (``evaluation.image.hooks.IMAGE``) and audio fills next."""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

import pandas as pd

from evaluation.bias import GroupAudit
from evaluation.config import AuditSpec, EvalSpec
from evaluation.features import ExtractorPlan
from evaluation.figures import Figure
from evaluation.plots import Picture
from evaluation.sets import SampleSet


class ModalityHooks(Protocol):
    """The evaluation side of one modality."""

    def open_dataset(self, root: Path, kept_only: bool) -> SampleSet:
        """A synthmill dataset folder of this modality, with its reader and labels."""

    def open_path(self, path: Path, samples_dir: Path | None) -> SampleSet | None:
        """A folder of this modality's files or one of its annotation files; None if neither."""

    def extractors(self, spec: EvalSpec, sample_set: SampleSet, needs: set[str]) -> ExtractorPlan:
        """The fidelity extractor and those for the ``needs`` it can meet."""

    def audit(self, dataset: Path, spec: AuditSpec,
              eval_spec: EvalSpec) -> tuple[list[Figure], pd.DataFrame, list[GroupAudit]]:
        """Bias audit of a dataset: figures, attribute distribution, one audit per group."""

    def pictures(self, root: Path, per_class: int) -> tuple[list[Picture], pd.DataFrame | None]:
        """The report's pictures of a dataset folder (samples, class balance) and a table of the
        samples shown."""

    def preview(self, path: Path) -> bytes:
        """PNG of one sample file, for report sections (e.g. memorization pairs)."""

