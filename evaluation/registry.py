"""What a name in ``EvalSpec.metrics`` means, what every figure in metrics.csv means, and which
modalities evaluation can read.

A ``Metric`` entry names what the metric needs, its compute function (``"module:function"``,
imported only when the metric runs), its own settings model if it has settings of its own, and
the figures it writes, each declared once here with its direction, unit, plot and whether it is a
key figure. The comparison table and the report (its headline, key table, best marks and chart
captions) read them from these declarations (``figure_spec``) and nowhere else.
Adding a metric is one new module (its compute function) plus one ``METRICS.add``.

Needs a metric can name: ``fidelity`` (the fidelity extractor's arrays of the set: ``features``
(N, D), ``logits`` (N, C)), ``reference`` (the reference's fidelity features), a modality's name
(``image``, ``audio``: met by that modality's sets only), and what the set's modality can extract
(images: ``clip``, the CLIP image and instance-crop embeddings; ``checker``, the shapes checker's
maps, for shapes-world sets; audio: ``classifier``, the embedded tones classifier per file;
``events``, the classifier over labelled events and sliding over each file; ``clap`` and
``clap_events``, CLAP embeddings of files and events). A metric whose needs are not met is
skipped; one that needs another modality is skipped silently.

One implementation, a name per modality: a figure's name says what it is, so the Frechet distance
of an image set's features is ``fid`` and of an audio set's ``fad``. Both metrics call the same
function (``evaluation.fidelity.score_fid``, which names the figure); the modality need picks the
one that runs. Figures computed the same way for any embedding (precision/recall, density/coverage,
Vendi, memorization) keep one name; the ``extractor`` column says whose embedding.

This module is light on purpose (no torch): configs validate ``EvalSpec.metrics`` against it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from augment.core.registry import Entry, Registry, resolve
from evaluation.figures import FigureSpec


@dataclass(frozen=True)
class Reported(Entry):
    """Something that writes rows of metrics.csv, and the figures it declares."""

    figures: tuple[FigureSpec, ...]


@dataclass(frozen=True)
class Metric(Reported):
    """A metric ``EvalSpec.metrics`` can name.

    ``compute(inputs: evaluation.inputs.MetricInputs) -> list[Figure]``; ``needs``: see the
    module docstring; ``settings``: a pydantic model of its own settings
    (``EvalSpec.metric_settings[name]``), handed to ``compute`` as ``inputs.settings``, or None;
    ``default``: chosen when a config does not list metrics; ``always``: written by every
    evaluation, not chosen by name (e.g. the count of unreadable files).
    """

    compute: Callable | str
    needs: tuple[str, ...] = ("fidelity",)
    settings: type | str | None = None
    default: bool = True
    always: bool = False

    def __post_init__(self):
        names = [f.name for f in self.figures]
        if not names or len(set(names)) != len(names):
            raise ValueError(f"metric {self.name}: declare its figures, each once; got {names}")

    def run(self, inputs) -> list:
        return resolve(self.compute)(inputs)

    def settings_model(self) -> type | None:
        return None if self.settings is None else resolve(self.settings)


@dataclass(frozen=True)
class Modality(Entry):
    """The evaluation side of a kind of sample: ``hooks`` (an ``evaluation.modality.ModalityHooks``)
    opens its sets with their reader, builds the extractors metrics need and draws its samples for
    the report; ``suffixes``: its sample files' suffixes, which tell a plain file's modality."""

    hooks: Any
    suffixes: tuple[str, ...]

    def load_hooks(self):
        return resolve(self.hooks)


class _Declaring(Registry):
    """A registry of ``Reported`` entries; a figure name is declared by one entry of all of them."""

    def __init__(self, kind: str, declared: dict[str, tuple[str, FigureSpec]]):
        super().__init__(kind)
        self._declared = declared

    def add(self, entry: Reported) -> Reported:
        clash = [f.name for f in entry.figures if f.name in self._declared]
        if clash:
            raise ValueError(f"{self.kind} {entry.name!r}: figure {clash[0]!r} is already declared "
                             f"by {self._declared[clash[0]][0]!r}")
        super().add(entry)
        self._declared.update({f.name: (entry.name, f) for f in entry.figures})
        return entry

    def remove(self, name: str) -> None:
        for figure in self.get(name).figures:
            del self._declared[figure.name]
        super().remove(name)


_DECLARED: dict[str, tuple[str, FigureSpec]] = {}
METRICS: Registry[Metric] = _Declaring("metric", _DECLARED)
AUDITS: Registry[Reported] = _Declaring("audit", _DECLARED)
STUDIES: Registry[Reported] = _Declaring("study", _DECLARED)
"""Studies beyond scoring a set (``synthmill utility``), and the figures they write."""
MODALITIES: Registry[Modality] = Registry("evaluation modality")


def figure_spec(name: str) -> FigureSpec | None:
    """The declaration of figure ``name`` (a metric column of metrics.csv); None if undeclared."""
    found = _DECLARED.get(name)
    return found[1] if found else None


def count_spec(name: str) -> FigureSpec | None:
    """The declaration of figure ``name`` when it is a count (``plot`` "count": unreadable files),
    shown as "3 files" and never ranked, charted or given a direction; None for any other."""
    declared = figure_spec(name)
    return declared if declared is not None and declared.is_count else None


def chosen(names: list[str]) -> list[Metric]:
    """The metrics an evaluation runs: those ``names`` chooses and those that always run, in
    registration order."""
    return [m for m in METRICS if m.always or m.name in names]


def selectable() -> tuple[str, ...]:
    """Names ``EvalSpec.metrics`` may list."""
    return tuple(m.name for m in METRICS if not m.always)


# Built-in entries ---------------------------------------------------------------------------------
# Registration order is the order of the rows in metrics.csv.
_VS_REFERENCE = ("fidelity", "reference")
_IMAGE_VS_REFERENCE = ("image",) + _VS_REFERENCE
_AUDIO_VS_REFERENCE = ("audio",) + _VS_REFERENCE
METRICS.add(Metric("fid", compute="evaluation.fidelity:score_fid", needs=_IMAGE_VS_REFERENCE,
                   figures=(FigureSpec("fid", False, key=True),)))
METRICS.add(Metric("fid_infinity", compute="evaluation.fidelity:score_fid_infinity",
                   needs=_IMAGE_VS_REFERENCE, default=False,
                   figures=(FigureSpec("fid_infinity", False),)))
METRICS.add(Metric("kid", compute="evaluation.fidelity:score_kid", needs=_IMAGE_VS_REFERENCE,
                   figures=(FigureSpec("kid", False),)))
METRICS.add(Metric("fad", compute="evaluation.audio.fidelity:score_fad", needs=_AUDIO_VS_REFERENCE,
                   figures=(FigureSpec("fad", False, key=True),)))
METRICS.add(Metric("fad_infinity", compute="evaluation.audio.fidelity:score_fad_infinity",
                   needs=_AUDIO_VS_REFERENCE, default=False,
                   figures=(FigureSpec("fad_infinity", False),)))
METRICS.add(Metric("audio_kid", compute="evaluation.audio.fidelity:score_audio_kid",
                   needs=_AUDIO_VS_REFERENCE, figures=(FigureSpec("audio_kid", False),)))
METRICS.add(Metric("prc", compute="evaluation.fidelity:score_prc", needs=_VS_REFERENCE,
                   figures=(FigureSpec("precision", True, "share", key=True),
                            FigureSpec("recall", True, "share", key=True))))
METRICS.add(Metric("density_coverage", compute="evaluation.diversity:score_density_coverage",
                   needs=_VS_REFERENCE, figures=(FigureSpec("density", True),
                                                 FigureSpec("coverage", True, "share"))))
METRICS.add(Metric("memorization", compute="evaluation.memorization:score_memorization",
                   needs=_VS_REFERENCE,
                   figures=(FigureSpec("memorization_rate", False, "share", key=True),
                            FigureSpec("near_duplicate_rate", False, "share"))))
METRICS.add(Metric("is", compute="evaluation.fidelity:score_is", needs=("image", "fidelity"),
                   figures=(FigureSpec("inception_score", True),)))
METRICS.add(Metric("audio_is", compute="evaluation.audio.fidelity:score_audio_is",
                   needs=("audio", "classifier"), figures=(FigureSpec("audio_is", True),)))
METRICS.add(Metric("diversity", compute="evaluation.diversity:score_diversity",
                   figures=(FigureSpec("vendi", True, "effective samples", key=True),
                            FigureSpec("mean_pairwise_distance", True, "cosine distance"))))
METRICS.add(Metric("clip", compute="evaluation.image.clip_alignment:score_clip",
                   needs=("image", "clip"),
                   figures=(FigureSpec("clip_score", True), FigureSpec("clip_score_100", True),
                            FigureSpec("clip_crop_accuracy", True, "share"))))
METRICS.add(Metric("layout", compute="evaluation.image.layout_fidelity:score_layout",
                   needs=("image", "checker"),
                   figures=(FigureSpec("layout_miou", True, "IoU", key=True),
                            FigureSpec("layout_colour_accuracy", True, "share"),
                            FigureSpec("layout_box_recall_iou50", True, "share"),
                            FigureSpec("layout_iou", True, "IoU"))))
METRICS.add(Metric("label_consistency",
                   compute="evaluation.audio.events:score_label_consistency",
                   needs=("audio", "events"),
                   figures=(FigureSpec("label_consistency", True, "share", key=True),)))
METRICS.add(Metric("event_f1", compute="evaluation.audio.events:score_event_f1",
                   needs=("audio", "events"), figures=(FigureSpec("event_f1", True),)))
METRICS.add(Metric("clap", compute="evaluation.audio.clap_alignment:score_clap",
                   needs=("audio", "clap"),
                   figures=(FigureSpec("clap_score", True, "cosine"),
                            FigureSpec("clap_zero_shot_accuracy", True, "share"))))
METRICS.add(Metric("unreadable", compute="evaluation.evaluate:score_unreadable",
                   needs=("image",), default=False, always=True,
                   figures=(FigureSpec("unreadable_images", False, "files", plot="count"),)))
METRICS.add(Metric("unreadable_audio", compute="evaluation.evaluate:score_unreadable_audio",
                   needs=("audio",), default=False, always=True,
                   figures=(FigureSpec("unreadable_audio", False, "files", plot="count"),)))
AUDITS.add(Reported("bias", figures=(  # evaluation.bias.bias_figures, one per STATISTICS entry
    FigureSpec("bias_normalised_entropy", True),  # 1 = uniform: higher is better
    FigureSpec("bias_kl_divergence", False, "nats"),
    FigureSpec("bias_max_abs_deviation", False, "share"),
    FigureSpec("bias_max_min_ratio", False))))
STUDIES.add(Reported("utility", figures=(  # evaluation.utility.summarize; its chart is the
    FigureSpec("utility_miou", True, "mIoU", plot="none"),  # learning curve of the report
    FigureSpec("utility_box_ap", True, "AP", plot="none"),
    FigureSpec("utility_box_ap50", True, "AP", plot="none"),
    FigureSpec("utility_gain_miou", True, "mIoU", plot="none"),
    FigureSpec("utility_gain_box_ap", True, "AP", plot="none"))))
MODALITIES.add(Modality("image", hooks="evaluation.image.hooks:IMAGE",
                        suffixes=(".png", ".jpg", ".jpeg", ".webp", ".bmp")))
MODALITIES.add(Modality("audio", hooks="evaluation.audio.hooks:AUDIO", suffixes=(".wav", ".flac")))
