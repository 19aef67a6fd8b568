"""Every run setting of synthmill, as pydantic models: the CLI, the flows and the library entry
points all take these, so no parameter list is written twice.

``extra="forbid"`` everywhere: an unknown or misspelt key is an error that names it.
"""

from __future__ import annotations

import re
import string
from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from augment.image.palettes import ADE20K
from augment.image.world import BACKGROUNDS, CLASSES, COLOURS

SCHEDULERS = ("ddpm", "ddim", "dpmsolver++", "unipc", "euler")
DTYPES = ("float32", "float16", "bfloat16")
SD_BACKENDS = ("controlnet-seg", "gligen", "inpaint-paste")
"""The Stable Diffusion backends: pretrained weights from a hub id or a local folder."""
_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")

Fraction = Annotated[float, Field(ge=0.0, le=1.0)]


class Strict(BaseModel):
    """Base of every config model: unknown keys are errors, values are validated on assignment."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class ModelSpec(Strict):
    """Which generator renders the layouts, and where it runs.

    The Stable Diffusion backends (``controlnet-seg``, ``gligen``, ``inpaint-paste``) load from a
    hub id or a local diffusers folder (safetensors only); see README "Real backends on a GPU".
    """

    backend: Literal["shapes-tiny", "shapes-world", "controlnet-seg", "gligen",
                     "inpaint-paste"] = "shapes-tiny"
    path: str | None = Field(
        None, description="Hub id or local folder of the weights; None = the embedded weights "
                          "(shapes-tiny only).")
    dtype: Literal["float32", "float16", "bfloat16"] = "float32"
    device: str = Field("cpu", description="'cpu', 'cuda', 'cuda:N' or 'auto' (cuda if present).")
    controlnet: str | None = Field(
        None, description="controlnet-seg: hub id or local folder of the segmentation ControlNet.")
    palette: dict[str, str | tuple[int, int, int]] = Field(
        default_factory=dict,
        description="controlnet-seg: class -> ADE20K class name or RGB colour of the control map; "
                    "classes named like an ADE20K class get its colour without an entry.")
    palette_background: tuple[int, int, int] = Field(
        (0, 0, 0), description="controlnet-seg: colour of pixels that belong to no instance.")
    compile_unet: bool = Field(False, description="torch.compile the UNet (worth it on a GPU).")
    cpu_offload: bool = Field(
        False, description="Keep models on the CPU and move each to the GPU while it runs.")
    vae_slicing: bool = Field(False, description="Decode the batch one image at a time.")
    vae_tiling: bool = Field(False, description="Decode large images in overlapping tiles.")

    @field_validator("device")
    @classmethod
    def _device(cls, value: str) -> str:
        if not re.fullmatch(r"cpu|auto|cuda(:\d+)?|mps", value):
            raise ValueError("must be 'cpu', 'auto', 'cuda', 'cuda:N' or 'mps'")
        return value

    @field_validator("palette")
    @classmethod
    def _palette(cls, value: dict) -> dict:
        for name, colour in value.items():
            if isinstance(colour, str) and colour not in ADE20K:
                raise ValueError(f"palette[{name!r}]: {colour!r} is not an ADE20K class; give an "
                                 "ADE20K class name (e.g. 'person', 'car') or an RGB triple")
            if not isinstance(colour, str) and not all(0 <= c <= 255 for c in colour):
                raise ValueError(f"palette[{name!r}]: RGB values must be in 0..255, got {colour}")
        return value

    @field_validator("palette_background")
    @classmethod
    def _rgb(cls, value: tuple[int, int, int]) -> tuple[int, int, int]:
        if not all(0 <= c <= 255 for c in value):
            raise ValueError(f"RGB values must be in 0..255, got {value}")
        return value

    @model_validator(mode="after")
    def _backend_fields(self) -> "ModelSpec":
        sd = self.backend in SD_BACKENDS
        if sd and self.path is None:
            raise ValueError(f"path: backend {self.backend!r} has no embedded weights; set a hub "
                             "id (e.g. stable-diffusion-v1-5/stable-diffusion-v1-5) or a local "
                             "diffusers folder")
        if (self.backend == "controlnet-seg") != (self.controlnet is not None):
            raise ValueError("controlnet: required for backend 'controlnet-seg' (e.g. "
                             "lllyasviel/control_v11p_sd15_seg) and not allowed for the others")
        if self.backend != "controlnet-seg" and (self.palette or any(self.palette_background)):
            raise ValueError("palette, palette_background: only for backend 'controlnet-seg'")
        gpu_options = [name for name in ("compile_unet", "cpu_offload", "vae_slicing",
                                         "vae_tiling") if getattr(self, name)]
        if gpu_options and not sd:
            raise ValueError(f"{', '.join(gpu_options)}: only for the Stable Diffusion backends")
        if self.cpu_offload and self.device == "cpu":
            raise ValueError("cpu_offload: needs a GPU device (device: cuda or auto)")
        return self


class SamplerSpec(Strict):
    """How the reverse diffusion is run."""

    scheduler: Literal["ddpm", "ddim", "dpmsolver++", "unipc", "euler"] = "dpmsolver++"
    steps: int = Field(20, ge=1, le=1000)
    guidance: float = Field(3.0, ge=0.0, le=30.0, description="Classifier-free guidance; 1 = off.")
    eta: float = Field(0.0, ge=0.0, le=1.0, description="DDIM eta (0 = deterministic).")
    noise_temperature: float = Field(1.0, gt=0.0, le=2.0, description="Scale of the initial noise.")
    batch_size: int = Field(16, ge=1, le=1024)
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


class LayoutSpec(Strict):
    """What the layout sampler draws: the labels exist before the pixels."""

    height: int = Field(64, ge=16, le=2048)
    width: int = Field(64, ge=16, le=2048)
    classes: list[str] = Field(default_factory=lambda: list(CLASSES), min_length=1)
    class_frequencies: dict[str, float] | None = Field(
        None, description="Target share of each class among objects (normalised); None = uniform.")
    objects_per_image: tuple[int, int] = (1, 4)
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
    coco_file: str | None = Field(
        None, description="A COCO instances file whose layouts (masks, boxes, categories) are "
                          "borrowed instead of drawing shapes; its images are not used.")
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
    background_images: str | None = Field(
        None, description="inpaint-paste: folder of background images (PNG/JPEG); sample i "
                          "pastes onto one drawn from (seed, i). None = generate backgrounds.")

    @field_validator("classes")
    @classmethod
    def _classes(cls, value: list[str]) -> list[str]:
        return _known("class", value, CLASSES)

    @field_validator("colours")
    @classmethod
    def _colours(cls, value: list[str]) -> list[str]:
        return _known("colour", value, COLOURS)

    @field_validator("backgrounds")
    @classmethod
    def _backgrounds(cls, value: list[str]) -> list[str]:
        return _known("background", value, BACKGROUNDS)

    @model_validator(mode="after")
    def _coco(self) -> "LayoutSpec":
        if self.coco_file is None:
            for name in ("coco_classes", "coco_repeat_threshold"):
                if getattr(self, name) is not None:
                    raise ValueError(f"{name}: only with coco_file")
        elif self.class_frequencies is not None or self.colour_bias:
            raise ValueError("class_frequencies, colour_bias: shapes-world settings, not used with "
                             "coco_file (rebalance with coco_repeat_threshold)")
        elif self.coco_classes is not None and len(set(self.coco_classes)) != len(self.coco_classes):
            raise ValueError(f"coco_classes: duplicate names in {self.coco_classes}")
        return self

    @model_validator(mode="after")
    def _consistent(self) -> "LayoutSpec":
        lo, hi = self.objects_per_image
        if not 1 <= lo <= hi <= 16:
            raise ValueError("objects_per_image must satisfy 1 <= min <= max <= 16")
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
            _known("class", [cls_name], CLASSES)
            _known("colour", list(dist), COLOURS)
            if sum(dist.values()) > 1.0 + 1e-9 or any(v < 0 for v in dist.values()):
                raise ValueError(f"colour_bias[{cls_name}] must be probabilities summing to <= 1")
        return self

    def class_probabilities(self) -> dict[str, float]:
        """Normalised target frequency of each class (uniform when none are given)."""
        raw = self.class_frequencies or {c: 1.0 for c in self.classes}
        weights = {c: float(raw.get(c, 0.0)) for c in self.classes}
        total = sum(weights.values())
        return {c: w / total for c, w in weights.items()}


class VerifySpec(Strict):
    """Post-hoc check of every instance by a model that is not the generator.

    ``checker``: the embedded shapes segmenter, score = IoU of each instance (shapes layouts).
    ``clip``: open_clip zero-shot classification of each instance's crop against all class names
    (as X-Paste filters pasted instances), score = probability of the true class.
    ``auto``: clip for the Stable Diffusion backends, the checker for the embedded ones.
    """

    enabled: bool = Field(True, description="False is the same as method: none.")
    method: Literal["auto", "checker", "clip", "none"] = "auto"
    min_score: Fraction = Field(
        0.5, description="Keep a sample only if every instance scores at least this (IoU for "
                         "the checker, class probability for clip).")
    clip_model: str = Field("ViT-B-32", description="clip: open_clip architecture name.")
    clip_checkpoint: str | None = Field(
        None, description="clip: local open_clip weights (.safetensors) for clip_model.")
    clip_margin: float = Field(
        0.1, ge=0.0, le=1.0, description="clip: box margin of a crop, as a share of its size.")

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
            return "clip" if backend in SD_BACKENDS else "checker"
        return self.method


class ImageJob(Strict):
    """One labeled image dataset."""

    name: str = Field("shapes", description="Dataset folder name under the output folder.")
    num_samples: int = Field(64, ge=1, le=10_000_000)
    seed: int = Field(0, ge=0, lt=2**63)
    shard_size: int = Field(32, ge=1, le=100_000)
    val_fraction: Fraction = 0.1
    model: ModelSpec = Field(default_factory=ModelSpec)
    sampler: SamplerSpec = Field(default_factory=SamplerSpec)
    layout: LayoutSpec = Field(default_factory=LayoutSpec)
    verify: VerifySpec = Field(default_factory=VerifySpec)

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not _SAFE_NAME.match(value) or value in {".", ".."}:
            raise ValueError("must be a plain folder name: letters, digits, '.', '_', '-' "
                             "(no path separators), at most 100 characters")
        return value

    @model_validator(mode="after")
    def _compatible(self) -> "ImageJob":
        backend, layout = self.model.backend, self.layout
        if backend not in SD_BACKENDS and layout.coco_file is not None:
            raise ValueError(f"layout.coco_file: {backend} draws only the shapes world; borrow "
                             "COCO layouts with controlnet-seg, gligen or inpaint-paste")
        if layout.background_images is not None and backend != "inpaint-paste":
            raise ValueError("layout.background_images: only for backend 'inpaint-paste'")
        method = self.verify.resolved_method(backend)
        if method == "checker" and layout.coco_file is not None:
            raise ValueError("verify.method: the shapes checker knows only the shapes world; "
                             "use clip (or none) with layout.coco_file")
        if method == "clip" and self.verify.clip_checkpoint is None:
            raise ValueError(f"verify.clip_checkpoint: verification of backend {backend!r} uses "
                             "open_clip crop classification and needs a local .safetensors "
                             "checkpoint; set it, or set verify.method: none")
        return self

    @property
    def num_shards(self) -> int:
        return -(-self.num_samples // self.shard_size)


METRICS = ("fid", "kid", "is", "prc", "fid_infinity", "clip", "layout", "diversity",
           "density_coverage", "memorization")


class EvalSpec(Strict):
    """How a synthetic set is scored against a reference (``synthmill evaluate``)."""

    reference: str | None = Field(
        None, description="Reference: image folder, synthmill dataset, COCO .json or stats .npz.")
    reference_images: str | None = Field(None, description="Image folder of a COCO reference.")
    extractor: Literal["shapes-features", "inception-v3-compat"] = "shapes-features"
    extractor_weights: str | None = Field(
        None, description="Local .safetensors weights of the extractor (required for inception).")
    metrics: list[Literal["fid", "kid", "is", "prc", "fid_infinity", "clip", "layout", "diversity",
                          "density_coverage", "memorization"]] = Field(
        default_factory=lambda: ["fid", "kid", "is", "prc", "clip", "layout", "diversity",
                                 "density_coverage", "memorization"], min_length=1)
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


class AuditSpec(Strict):
    """A bias audit: generate with the attribute left unspecified, classify it, compare to a target."""

    preset: Literal["shapes-colour"] = "shapes-colour"
    num_samples: int = Field(96, ge=8, le=1_000_000)
    seed: int = Field(7, ge=0)
    objects_per_image: tuple[int, int] = (1, 2)
    method: Literal["checker", "clip"] = Field(
        "checker", description="Who classifies the attribute: the shapes checker or zero-shot CLIP.")
    target: dict[str, float] | None = Field(None, description="Target distribution; None = uniform.")


class ReportSpec(Strict):
    """What the report shows."""

    title: str = "synthmill report"
    samples_per_class: int = Field(4, ge=0, le=32)
    memorization_examples: int = Field(6, ge=0, le=64)


class RunnerSpec(Strict):
    """Which Prefect task runner executes shards."""

    kind: Literal["threads", "dask", "ray"] = "threads"
    max_workers: int = Field(1, ge=1, le=1024)
    address: str | None = Field(None, description="Existing Dask scheduler / Ray cluster address.")


class RunConfig(Strict):
    """A whole run: what to generate, where to write it, how to execute it."""

    out: str = Field("datasets", description="Output folder for datasets.")
    image: ImageJob | None = None
    variants: list[dict] = Field(
        default_factory=list, description="Other generator settings to compare with `image`: "
        "partial ImageJob fields, each with its own name (e.g. {name: x, sampler: {steps: 10}}).")
    reference_job: ImageJob | None = Field(
        None, description="A dataset made to serve as the reference (e.g. real shapes-world scenes); "
        "used when evaluate.reference is not set.")
    evaluate: EvalSpec | None = None
    audit: AuditSpec | None = None
    report: ReportSpec = Field(default_factory=ReportSpec)
    runner: RunnerSpec = Field(default_factory=RunnerSpec)


def variant_jobs(config: "RunConfig") -> list[ImageJob]:
    """The main job followed by each variant (variant fields merged over the main job's)."""
    if config.image is None:
        return []
    jobs = [config.image]
    base = config.image.model_dump(mode="json")
    for i, variant in enumerate(config.variants):
        if "name" not in variant:
            raise ConfigError(f"variants.{i}.name: every variant needs its own dataset name")
        merged = _deep_merge(base, variant)
        try:
            jobs.append(ImageJob.model_validate(merged))
        except ValidationError as exc:
            raise ConfigError(format_validation_error(exc, f"variants.{i}")) from exc
    names = [j.name for j in jobs]
    if len(set(names)) != len(names):
        raise ConfigError(f"variants: dataset names must differ, got {names}")
    return jobs


def audit_job(config: "RunConfig") -> ImageJob | None:
    """The dataset a bias audit needs: the main job's generator with the attribute left open."""
    if config.audit is None or config.image is None:
        return None
    main = config.image
    layout = main.layout.model_copy(update={"colour_unspecified": 1.0,
                                            "objects_per_image": config.audit.objects_per_image})
    return main.model_copy(update={"name": f"{main.name}-audit", "layout": layout,
                                   "num_samples": config.audit.num_samples,
                                   "seed": config.audit.seed})


def _deep_merge(base: dict, update: dict) -> dict:
    out = dict(base)
    for key, value in update.items():
        out[key] = _deep_merge(out[key], value) if isinstance(value, dict) and isinstance(
            out.get(key), dict) else value
    return out


class TrainShapesSpec(Strict):
    """Recipe of the embedded ``shapes-tiny`` generator (``synthmill train shapes``)."""

    seed: int = 0
    resolution: Literal[32, 64] = 64
    steps: int = Field(4_600, ge=1)
    batch_size: int = Field(256, ge=1)
    learning_rate: float = Field(3e-4, gt=0)
    warmup_steps: int = Field(500, ge=0)
    ema_decay: float = Field(0.999, ge=0, lt=1)
    snr_gamma: float | None = Field(None, gt=0, description="Min-SNR loss weighting; None = off.")
    condition_dropout: Fraction = Field(0.1, description="Whole-condition dropout (for CFG).")
    colour_dropout: Fraction = Field(0.3, description="Per-instance colour left unspecified.")
    background_dropout: Fraction = 0.3
    num_scenes: int = Field(150_000, ge=16, description="Procedural training scenes to pre-render.")
    block_out_channels: tuple[int, ...] = (24, 48, 96, 128)
    layers_per_block: int = Field(1, ge=1)
    device: str = "auto"
    mixed_precision: Literal["no", "bf16", "fp16"] = "bf16"
    log_every: int = Field(200, ge=1)


class ConfigError(ValueError):
    """A config file that cannot be used; the message names the file and the field."""


def _known(kind: str, values: list[str], allowed: tuple[str, ...]) -> list[str]:
    unknown = [v for v in values if v not in allowed]
    if unknown:
        raise ValueError(f"unknown {kind} {unknown}; allowed: {list(allowed)}")
    if len(set(values)) != len(values):
        raise ValueError(f"duplicate {kind} names in {values}")
    return values


def format_validation_error(error: ValidationError, source: str) -> str:
    """One line per problem: ``source: field.path: message``."""
    lines = []
    for item in error.errors():
        field = ".".join(str(p) for p in item["loc"]) or "(top level)"
        message = item["msg"]
        if item["type"] == "extra_forbidden":
            message = "unknown key (check the spelling; extra keys are not allowed)"
        lines.append(f"{source}: {field}: {message}")
    return "\n".join(lines)


def load_config(path: str | Path, model: type[Strict] = RunConfig) -> Strict:
    """Read a YAML file into ``model``; raise ``ConfigError`` naming the file and the fields."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ConfigError(f"{path}: config file not found") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of keys to values")
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, str(path))) from exc
