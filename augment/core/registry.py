"""The registry: what a name in a config means.

Each entry names one thing a config can choose (a modality, a generator backend, a label exporter;
evaluation keeps its metrics in a registry of the same kind) and carries what the rest of the code
needs to know about it without a name check anywhere else: its config model, the kind of labels it
makes or reads (``"masks"``, ``"boxes"``, ``"events"``) and its loader.

Config models and loaders are given as objects or as ``"module:attribute"`` strings, imported on
first use: a config file validates without importing torch or diffusers for backends it does not
use. Adding a backend is one new module (its settings model and loader) plus one ``BACKENDS.add``.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, fields
from typing import Any, Callable, Generic, Iterator, TypeVar

LABEL_KINDS = ("masks", "boxes", "events")
"""``masks``: instance and semantic masks follow the condition (images); ``boxes``: only the boxes
do (e.g. GLIGEN); ``events``: onsets, offsets and classes of sound events (audio)."""


def resolve(ref: Any) -> Any:
    """``ref`` itself, or the object a ``"package.module:attribute"`` string names."""
    if not isinstance(ref, str):
        return ref
    module, _, attribute = ref.partition(":")
    return getattr(importlib.import_module(module), attribute)


@dataclass(frozen=True)
class Entry:
    """A registered name."""

    name: str


@dataclass(frozen=True)
class Modality(Entry):
    """A kind of sample (image, audio): its job config model and its generation hooks (the
    ``ModalityHooks`` of ``augment.core.shards``)."""

    job: type | str
    hooks: Any

    def job_model(self) -> type:
        return resolve(self.job)

    def load_hooks(self):
        return resolve(self.hooks)


@dataclass(frozen=True)
class Backend(Entry):
    """A generator: ``spec`` is its settings model (a ``BackendSpec`` subclass, the job's ``model:``
    section), ``loader(spec)`` returns an object with ``render(conditions, sampler, seeds,
    force_fp32=False)``, ``prompt(condition, sampler)``, ``model_id`` and ``weights``.

    ``labels``: the label kind its samples follow; ``conditions``: the condition features it
    honours (image: ``"shapes"`` and ``"coco"`` layouts, ``"background_images"``); ``verify``:
    what ``verify.method: auto`` means for it.
    """

    modality: str
    spec: type | str
    loader: Callable | str
    labels: str = "masks"
    conditions: tuple[str, ...] = ()
    verify: str = "none"

    def __post_init__(self):
        if self.labels not in LABEL_KINDS:
            raise ValueError(f"backend {self.name}: labels must be one of {LABEL_KINDS}")

    def spec_model(self) -> type:
        return resolve(self.spec)

    def load(self, spec):
        return resolve(self.loader)(spec)


@dataclass(frozen=True)
class Exporter(Entry):
    """A label format written when a dataset is finalized: ``writer(root, manifest, categories,
    labels)`` for datasets of ``modality`` whose label kind is in ``labels``."""

    modality: str
    labels: tuple[str, ...]
    writer: Callable | str

    def write(self, *args, **kwargs):
        return resolve(self.writer)(*args, **kwargs)


E = TypeVar("E", bound=Entry)


class Registry(Generic[E]):
    """Entries of one kind by name, in the order they were added."""

    def __init__(self, kind: str):
        self.kind = kind
        self._entries: dict[str, E] = {}

    def add(self, entry: E) -> E:
        if entry.name in self._entries:
            raise ValueError(f"{self.kind} {entry.name!r} is already registered")
        self._entries[entry.name] = entry
        return entry

    def remove(self, name: str) -> None:
        del self._entries[name]

    def get(self, name: str) -> E:
        """The entry called ``name``; a ValueError listing the allowed names otherwise."""
        try:
            return self._entries[name]
        except (KeyError, TypeError):
            raise ValueError(f"unknown {self.kind} {name!r}; allowed: {self.names()}") from None

    def names(self, **where) -> list[str]:
        """Names of the entries whose attributes equal ``where`` (e.g. ``modality="image"``)."""
        return [e.name for e in self.select(**where)]

    def select(self, **where) -> list[E]:
        return [e for e in self._entries.values()
                if all(getattr(e, k) == v for k, v in where.items())]

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[E]:
        return iter(list(self._entries.values()))


def describe(entry: Entry) -> dict:
    """An entry's fields as plain values (callables and classes by name), for listings."""
    def plain(value):
        return getattr(value, "__qualname__", value) if callable(value) else value
    return {f.name: plain(getattr(entry, f.name)) for f in fields(entry)}


MODALITIES: Registry[Modality] = Registry("modality")
BACKENDS: Registry[Backend] = Registry("backend")
EXPORTERS: Registry[Exporter] = Registry("exporter")

# Built-in entries ---------------------------------------------------------------------------------
_IMAGE_SD = ("shapes", "coco")
MODALITIES.add(Modality("image", job="augment.config.image:ImageJob",
                        hooks="augment.image.generation:IMAGE"))
BACKENDS.add(Backend("shapes-tiny", "image", spec="augment.config.image:ShapesTinySpec",
                     loader="augment.image.backends.shapes_tiny:load", labels="masks",
                     conditions=("shapes",), verify="checker"))
BACKENDS.add(Backend("shapes-world", "image", spec="augment.config.image:ShapesWorldSpec",
                     loader="augment.image.backends.shapes_world:load", labels="masks",
                     conditions=("shapes",), verify="checker"))
BACKENDS.add(Backend("controlnet-seg", "image", spec="augment.config.image:ControlNetSegSpec",
                     loader="augment.image.backends.controlnet_seg:load",
                     labels="masks", conditions=_IMAGE_SD, verify="clip"))
BACKENDS.add(Backend("gligen", "image", spec="augment.config.image:GligenSpec",
                     loader="augment.image.backends.gligen:load",
                     labels="boxes", conditions=_IMAGE_SD, verify="clip"))
BACKENDS.add(Backend("inpaint-paste", "image", spec="augment.config.image:InpaintPasteSpec",
                     loader="augment.image.backends.inpaint_paste:load",
                     labels="masks", conditions=_IMAGE_SD + ("background_images",), verify="clip"))
EXPORTERS.add(Exporter("coco", "image", labels=("masks", "boxes"),
                       writer="augment.image.writers.coco:write_coco"))
EXPORTERS.add(Exporter("yolo", "image", labels=("masks", "boxes"),
                       writer="augment.image.writers.yolo:write_yolo"))
MODALITIES.add(Modality("audio", job="augment.config.audio:AudioJob",
                        hooks="augment.audio.generation:AUDIO"))
BACKENDS.add(Backend("tones-tiny", "audio", spec="augment.config.audio:TonesTinySpec",
                     loader="augment.audio.backends.tones_tiny:load", labels="events",
                     conditions=("soundscape",), verify="classifier"))
BACKENDS.add(Backend("tones-world", "audio", spec="augment.config.audio:TonesWorldSpec",
                     loader="augment.audio.backends.tones_world:load", labels="events",
                     conditions=("soundscape",), verify="classifier"))
BACKENDS.add(Backend("audioldm2", "audio", spec="augment.config.audio:AudioLDM2Spec",
                     loader="augment.audio.backends.audioldm2:load", labels="events",
                     conditions=("soundscape",), verify="clap"))
BACKENDS.add(Backend("stable-audio", "audio", spec="augment.config.audio:StableAudioSpec",
                     loader="augment.audio.backends.stable_audio:load", labels="events",
                     conditions=("soundscape",), verify="clap"))
EXPORTERS.add(Exporter("dcase", "audio", labels=("events",),
                       writer="augment.audio.writers.dcase:write_events_tsv"))
EXPORTERS.add(Exporter("jams", "audio", labels=("events",),
                       writer="augment.audio.writers.jams_writer:write_jams"))
