"""Settings of an image dataset job: the backend (``model:``), the sampler, the layouts, the
verification. Backends are chosen by name from ``augment.core.registry.BACKENDS``; each has its own
settings model (here for the built-in ones), so a setting another backend has is an error that
names the backend.
"""

from __future__ import annotations

import string
from typing import Annotated, Any, ClassVar, Literal

from pydantic import Field, SerializeAsAny, WrapValidator, field_validator, model_validator
from pydantic_core import PydanticCustomError

from augment.config.base import (BackendSpec, Fraction, JobBase, SamplerSpec, Strict, backend_spec,
                                 known)
from augment.core.registry import BACKENDS
from augment.image.palettes import ADE20K
from augment.image.world import BACKGROUNDS, CLASSES, COLOURS


def _rgb(value: tuple[int, int, int]) -> tuple[int, int, int]:
    if not all(0 <= c <= 255 for c in value):
        raise ValueError(f"RGB values must be in 0..255, got {value}")
    return value


class ShapesTinySpec(BackendSpec):
    """``shapes-tiny``: the embedded layout-to-image diffusion model (``path`` None = embedded)."""

    backend: Literal["shapes-tiny"] = "shapes-tiny"


class ShapesWorldSpec(BackendSpec):
    """``shapes-world``: real procedural scenes rendered from the layouts (a reference set)."""

    backend: Literal["shapes-world"] = "shapes-world"


class StableDiffusionSpec(BackendSpec):
    """The Stable Diffusion backends: pretrained weights from a hub id or a local diffusers folder
    (safetensors only), and their GPU options; see README "Real backends on a GPU"."""

    path: str = Field(..., description="Hub id (e.g. stable-diffusion-v1-5/stable-diffusion-v1-5) "
                                       "or a local diffusers folder.")
    compile_unet: bool = Field(False, description="torch.compile the UNet (worth it on a GPU).")
    cpu_offload: bool = Field(
        False, description="Keep models on the CPU and move each to the GPU while it runs.")
    vae_slicing: bool = Field(False, description="Decode the batch one image at a time.")
    vae_tiling: bool = Field(False, description="Decode large images in overlapping tiles.")

    @model_validator(mode="after")
    def _offload(self) -> "StableDiffusionSpec":
        if self.cpu_offload and self.device == "cpu":
            raise ValueError("cpu_offload: needs a GPU device (device: cuda or auto)")
        return self


class ControlNetSegSpec(StableDiffusionSpec):
    """``controlnet-seg``: SD + a segmentation ControlNet; the layout is painted in its palette."""

    weight_fields: ClassVar[tuple[str, ...]] = ("path", "controlnet")

    backend: Literal["controlnet-seg"] = "controlnet-seg"
    controlnet: str = Field(..., description="Hub id or local folder of the segmentation ControlNet "
                                             "(e.g. lllyasviel/control_v11p_sd15_seg).")
    palette: dict[str, str | tuple[int, int, int]] = Field(
        default_factory=dict,
        description="class -> ADE20K class name or RGB colour of the control map; classes named "
                    "like an ADE20K class get its colour without an entry.")
    palette_background: tuple[int, int, int] = Field(
        (0, 0, 0), description="Colour of pixels that belong to no instance.")

    @field_validator("palette")
    @classmethod
    def _palette(cls, value: dict) -> dict:
        for name, colour in value.items():
            if isinstance(colour, str) and colour not in ADE20K:
                raise ValueError(f"palette[{name!r}]: {colour!r} is not an ADE20K class; give an "
                                 "ADE20K class name (e.g. 'person', 'car') or an RGB triple")
            if not isinstance(colour, str):
                _rgb(colour)
        return value

    @field_validator("palette_background")
    @classmethod
    def _background(cls, value: tuple[int, int, int]) -> tuple[int, int, int]:
        return _rgb(value)


class GligenSpec(StableDiffusionSpec):
    """``gligen``: SD GLIGEN, one box and phrase per object (labels: boxes only)."""

    backend: Literal["gligen"] = "gligen"


class InpaintPasteSpec(StableDiffusionSpec):
    """``inpaint-paste``: a background, then each object inpainted in its own mask."""

    backend: Literal["inpaint-paste"] = "inpaint-paste"


class ImageSamplerSpec(SamplerSpec):
    """How the reverse diffusion is run, plus the text settings of the Stable Diffusion backends."""

    prompt_template: str = Field(
        "{caption}", description="Text prompt of the Stable Diffusion backends; placeholders "
                                 "{caption} (the layout's caption, or an instance's phrase for "
                                 "inpaint-paste) and {classes} (its class names).")
    negative_prompt: str = Field("", description="Negative prompt of the text-to-image backends.")
    background_prompt: str = Field(
        "an empty scene, nobody, nothing in it",
        description="inpaint-paste: prompt of the generated background when the layout names "
                    "none (it must not draw objects of the dataset's classes: they would be "
                    "unlabelled).")
    controlnet_conditioning_scale: float = Field(1.0, ge=0.0, le=5.0)
    guess_mode: bool = Field(False, description="controlnet-seg: ControlNet guess mode.")
    gligen_scheduled_sampling_beta: Fraction = Field(
        0.3, description="gligen: share of the steps that use the box grounding.")

    @field_validator("prompt_template")
    @classmethod
    def _template(cls, value: str) -> str:
        try:
            fields = {name for _, name, _, _ in string.Formatter().parse(value) if name is not None}
        except ValueError as exc:
            raise ValueError(f"not a valid template ({exc}); use {{caption}} and {{classes}}") from None
        unknown = fields - {"caption", "classes"}
        if unknown:
            raise ValueError(f"unknown placeholders {sorted(unknown)}; allowed: caption, classes")
        return value


class LayoutBase(Strict):
    """What every layout source draws: the image size, objects per image, and (inpaint-paste) a
    folder of background images."""

    height: int = Field(64, ge=16, le=2048)
    width: int = Field(64, ge=16, le=2048)
    objects_per_image: tuple[int, int] = (1, 4)
    background_images: str | None = Field(
        None, description="inpaint-paste: folder of background images (PNG/JPEG); sample i "
                          "pastes onto one drawn from (seed, i). None = generate backgrounds.")

    @model_validator(mode="after")
    def _objects(self) -> "LayoutBase":
        lo, hi = self.objects_per_image
        if not 1 <= lo <= hi <= 16:
            raise ValueError("objects_per_image must satisfy 1 <= min <= max <= 16")
        return self


class ShapesLayoutSpec(LayoutBase):
    """Layouts drawn from the procedural shapes world: the labels exist before the pixels."""

    source: Literal["shapes"] = "shapes"
    classes: list[str] = Field(default_factory=lambda: list(CLASSES), min_length=1)
    class_frequencies: dict[str, float] | None = Field(
        None, description="Target share of each class among objects (normalised); None = uniform.")
    size_range: tuple[float, float] = Field(
        (0.22, 0.42), description="Object diameter as a fraction of the shorter image side.")
    position_range: tuple[float, float] = Field(
        (0.15, 0.85), description="Object centre range as a fraction of width/height.")
    allow_occlusion: bool = True
    min_visible: float = Field(
        0.5, gt=0.0, le=1.0, description="Smallest visible share of an object after occlusion.")
    colours: list[str] = Field(default_factory=lambda: list(COLOURS), min_length=1)
    colour_bias: dict[str, dict[str, float]] = Field(
        default_factory=dict, description="P(colour | class) for listed pairs; rest uniform.")
    colour_unspecified: Fraction = Field(
        0.0, description="Share of instances whose colour is left to the generator.")
    backgrounds: list[str] = Field(default_factory=lambda: list(BACKGROUNDS), min_length=1)
    background_unspecified: Fraction = 0.0

    @field_validator("classes")
    @classmethod
    def _classes(cls, value: list[str]) -> list[str]:
        return known("class", value, CLASSES)

    @field_validator("colours")
    @classmethod
    def _colours(cls, value: list[str]) -> list[str]:
        return known("colour", value, COLOURS)

    @field_validator("backgrounds")
    @classmethod
    def _backgrounds(cls, value: list[str]) -> list[str]:
        return known("background", value, BACKGROUNDS)

    @model_validator(mode="after")
    def _consistent(self) -> "ShapesLayoutSpec":
        for name, (a, b) in (("size_range", self.size_range), ("position_range", self.position_range)):
            if not 0.0 < a <= b <= 1.0:
                raise ValueError(f"{name} must satisfy 0 < min <= max <= 1, got ({a}, {b})")
        if self.class_frequencies is not None:
            unknown = set(self.class_frequencies) - set(self.classes)
            if unknown:
                raise ValueError(f"class_frequencies names classes not in classes: {sorted(unknown)}")
            if any(v < 0 for v in self.class_frequencies.values()) or not any(
                    self.class_frequencies.values()):
                raise ValueError("class_frequencies must be >= 0 with a positive total")
        for cls_name, dist in self.colour_bias.items():
            known("class", [cls_name], CLASSES)
            known("colour", list(dist), COLOURS)
            if sum(dist.values()) > 1.0 + 1e-9 or any(v < 0 for v in dist.values()):
                raise ValueError(f"colour_bias[{cls_name}] must be probabilities summing to <= 1")
        return self

    def class_probabilities(self) -> dict[str, float]:
        """Normalised target frequency of each class (uniform when none are given)."""
        raw = self.class_frequencies or {c: 1.0 for c in self.classes}
        weights = {c: float(raw.get(c, 0.0)) for c in self.classes}
        total = sum(weights.values())
        return {c: w / total for c, w in weights.items()}


class CocoLayoutSpec(LayoutBase):
    """Layouts borrowed from a COCO instances file (its masks, boxes, categories; not its pixels)."""

    source: Literal["coco"] = "coco"
    coco_file: str = Field(..., description="A COCO instances file whose layouts are borrowed.")
    coco_classes: list[str] | None = Field(
        None, min_length=1, description="Categories of coco_file to keep (None = all); others "
                                        "are dropped from the borrowed layouts.")
    coco_fit: Literal["crop", "stretch"] = Field(
        "crop", description="How a borrowed layout meets height x width: scale the shorter side "
                            "and centre-crop, or stretch both sides.")
    coco_repeat_threshold: float | None = Field(
        None, gt=0.0, le=1.0,
        description="Rebalance toward rare classes by repeat-factor sampling (LVIS, Gupta et "
                    "al. 2019): images are drawn with weight max(1, sqrt(t / f(c))) over their "
                    "classes c; None = uniform over images.")

    @field_validator("coco_classes")
    @classmethod
    def _distinct(cls, value: list[str] | None) -> list[str] | None:
        if value is not None and len(set(value)) != len(value):
            raise ValueError(f"duplicate names in {value}")
        return value


LAYOUT_SOURCES = {"shapes": ShapesLayoutSpec, "coco": CocoLayoutSpec}


def _layout(value: Any, handler, info) -> LayoutBase:
    """A layout mapping -> the model of its ``source`` ("coco" when it names a ``coco_file``)."""
    if isinstance(value, LayoutBase):
        return value
    if not isinstance(value, dict):
        raise PydanticCustomError("layout", "expected a mapping of layout settings")
    source = value.get("source", "coco" if "coco_file" in value else "shapes")
    if source not in LAYOUT_SOURCES:
        raise PydanticCustomError("layout_source", "unknown layout source {source}; allowed: "
                                  "{allowed}", {"source": repr(source), "allowed": list(LAYOUT_SOURCES)})
    return LAYOUT_SOURCES[source].model_validate(value)


LayoutSpec = Annotated[SerializeAsAny[LayoutBase], WrapValidator(_layout)]
"""A layout source's settings: ``ShapesLayoutSpec`` or ``CocoLayoutSpec``."""


class VerifySpec(Strict):
    """Post-hoc check of every instance by a model that is not the generator.

    ``checker``: the embedded shapes segmenter, score = IoU of each instance (shapes layouts).
    ``clip``: open_clip zero-shot classification of each instance's crop against all class names
    (as X-Paste filters pasted instances), score = probability of the true class.
    ``auto``: what the backend's registry entry says (clip for the Stable Diffusion backends, the
    checker for the embedded ones).
    """

    enabled: bool = Field(True, description="False is the same as method: none.")
    method: Literal["auto", "checker", "clip", "none"] = "auto"
    min_score: Fraction = Field(
        0.5, description="Keep a sample only if every instance scores at least this (IoU for "
                         "the checker, class probability for clip).")
    clip_model: str = Field("ViT-B-32", description="clip: open_clip architecture name, or the "
                                                    "path of an open_clip model-config .json.")
    clip_checkpoint: str | None = Field(
        None, description="clip: local open_clip weights (.safetensors) for clip_model.")
    clip_margin: float = Field(
        0.15, ge=0.0, le=1.0, description="clip: margin of the square crop around an instance, "
                                          "as a share of its longer side (as evaluation crops).")

    @field_validator("clip_checkpoint")
    @classmethod
    def _safetensors(cls, value: str | None) -> str | None:
        if value is not None and not value.endswith(".safetensors"):
            raise ValueError("must be a local .safetensors file (pickled checkpoints are refused)")
        return value

    def resolved_method(self, backend: str) -> str:
        """The method actually used for ``backend``: "checker", "clip" or "none"."""
        if not self.enabled:
            return "none"
        if self.method == "auto":
            return BACKENDS.get(backend).verify
        return self.method


class ImageJob(JobBase):
    """One labeled image dataset."""

    modality: Literal["image"] = "image"
    name: str = Field("shapes", description="Dataset folder name under the output folder.")
    model: Annotated[SerializeAsAny[BackendSpec], backend_spec("image", "shapes-tiny")] = Field(
        default_factory=ShapesTinySpec, description="The generator backend and its settings.")
    sampler: ImageSamplerSpec = Field(default_factory=ImageSamplerSpec)
    layout: LayoutSpec = Field(default_factory=ShapesLayoutSpec)
    verify: VerifySpec = Field(default_factory=VerifySpec)

    @model_validator(mode="after")
    def _compatible(self) -> "ImageJob":
        entry, layout = BACKENDS.get(self.model.backend), self.layout
        if layout.source not in entry.conditions:
            raise ValueError(f"layout.source: backend {entry.name!r} renders only "
                             f"{list(entry.conditions)} layouts, not {layout.source!r}")
        if layout.background_images is not None and "background_images" not in entry.conditions:
            raise ValueError(f"layout.background_images: backend {entry.name!r} does not paste "
                             "onto background images")
        method = self.verify.resolved_method(self.model.backend)
        if method == "checker" and layout.source != "shapes":
            raise ValueError("verify.method: the shapes checker knows only the shapes world; "
                             "use clip (or none) with borrowed layouts")
        if method == "clip" and self.verify.clip_checkpoint is None:
            raise ValueError(f"verify.clip_checkpoint: verification of backend {entry.name!r} uses "
                             "open_clip crop classification and needs a local .safetensors "
                             "checkpoint; set it, or set verify.method: none")
        return self
