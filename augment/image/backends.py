"""Generator backends: one plain dict from backend name to loader.

A backend turns layouts into images: ``render(layouts, sampler, seeds, force_fp32=False)`` returns
float images (B, H, W, 3) in [0, 1] (NaN/inf left in place: the caller's guard detects them per
sample) and has ``model_id`` and ``weights`` (a hash). The Stable Diffusion backends live in
``augment.image.backends_sd``.
Loaders are cached per process, so shards running in threads share one set of weights.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch

from augment.config import ModelSpec, SamplerSpec
from augment.core.devices import resolve_device, resolve_dtype
from augment.core.schedulers import make_scheduler

log = logging.getLogger(__name__)

EMBEDDED_SHAPES_TINY = Path(__file__).resolve().parents[1] / "assets" / "shapes-tiny"


def weights_hash(folder: str | Path) -> str:
    """sha256 over the model's safetensors files (names and bytes), 16 hex digits."""
    digest = hashlib.sha256()
    files = sorted(Path(folder).rglob("*.safetensors"))
    if not files:
        raise FileNotFoundError(f"no .safetensors weights under {folder}")
    for path in files:
        digest.update(str(path.relative_to(folder)).encode())
        with open(path, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()[:16]


def resolve_model_path(path: str | None, embedded: Path | None,
                       field: str = "model.path") -> Path:
    """A local folder as given, the embedded weights for None, or a hub id from the local cache.

    Hub ids resolve through ``huggingface_hub.snapshot_download``; offline (HF_HUB_OFFLINE=1 or no
    network) a model that is not in the cache is an error that says how to supply a local folder
    (in the config ``field``).
    """
    if path is None:
        return embedded
    local = Path(path).expanduser()
    if local.exists():
        if not local.is_dir():
            raise FileNotFoundError(f"model path {local} is a file; expected a diffusers folder")
        return local
    if path.startswith((".", "/", "~")) or path.count("/") != 1:
        raise FileNotFoundError(f"model folder {local} does not exist")
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(path, allow_patterns=["*.json", "*.safetensors", "*.txt"]))
    except Exception as exc:  # offline, unknown repo, no auth: all end the same way for a user
        raise FileNotFoundError(
            f"cannot load model {path!r} from the Hugging Face hub ({type(exc).__name__}); "
            f"download it where you have network (huggingface-cli download {path} --local-dir "
            f"DIR) and set {field} to that local folder") from None


@dataclass
class ShapesTinyBackend:
    """The embedded layout-to-image model (see ``augment.image.pipelines.shapes_tiny``)."""

    pipe: object
    model_id: str
    weights: str
    device: torch.device
    dtype: torch.dtype
    _fp32: object = field(default=None, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def render(self, layouts, sampler: SamplerSpec, seeds: list[int],
               force_fp32: bool = False) -> np.ndarray:
        """Images (B, H, W, 3) float32 in [0, 1] for ``layouts``; one generator per sample."""
        from augment.image.pipelines.shapes_tiny import ShapesTinyPipeline, encode_layouts

        base = self._fp32_pipe() if force_fp32 else self.pipe
        # a private scheduler per call: schedulers hold per-run state and shards may share the unet
        pipe = ShapesTinyPipeline(unet=base.unet, scheduler=make_scheduler(sampler.scheduler,
                                                                           base.scheduler))
        pipe.set_progress_bar_config(disable=True)
        generators = [torch.Generator(self.device).manual_seed(s) for s in seeds]
        out = pipe(encode_layouts(layouts), num_inference_steps=sampler.steps,
                   guidance_scale=sampler.guidance, eta=sampler.eta,
                   noise_temperature=sampler.noise_temperature, generator=generators,
                   output_type="pt")
        return out.images.permute(0, 2, 3, 1).float().cpu().numpy()

    def _fp32_pipe(self):
        if self.dtype == torch.float32:
            return self.pipe
        with self._lock:
            if self._fp32 is None:
                from augment.image.pipelines.shapes_tiny import ShapesTinyPipeline

                self._fp32 = ShapesTinyPipeline.from_pretrained(self.model_id, dtype=torch.float32)
                self._fp32.to(self.device)
            return self._fp32


def load_shapes_tiny(spec: ModelSpec) -> ShapesTinyBackend:
    from augment.image.pipelines.shapes_tiny import ShapesTinyPipeline

    folder = resolve_model_path(spec.path, EMBEDDED_SHAPES_TINY)
    device = resolve_device(spec.device)
    dtype = resolve_dtype(spec.dtype, device)
    try:
        pipe = ShapesTinyPipeline.from_pretrained(folder, dtype=dtype)
    except (OSError, ValueError, EnvironmentError) as exc:
        raise FileNotFoundError(f"cannot load shapes-tiny weights from {folder}: {exc}") from exc
    pipe.to(device)
    pipe.unet.to(memory_format=torch.channels_last)  # ~25% faster convolutions on CPU
    return ShapesTinyBackend(pipe=pipe, model_id=str(folder), weights=weights_hash(folder),
                             device=device, dtype=dtype)


def load_stable_diffusion(spec: ModelSpec):
    """``controlnet-seg``, ``gligen`` and ``inpaint-paste`` (see ``augment.image.backends_sd``)."""
    from augment.image.backends_sd import load_sd_backend

    return load_sd_backend(spec)


def load_shapes_world(spec: ModelSpec):
    """``shapes-world``: real procedural scenes (a reference set made by the same flow)."""
    from augment.image.world_backend import ShapesWorldBackend

    return ShapesWorldBackend()


LOADERS = {"shapes-tiny": load_shapes_tiny, "shapes-world": load_shapes_world,
           "controlnet-seg": load_stable_diffusion, "gligen": load_stable_diffusion,
           "inpaint-paste": load_stable_diffusion}

BOXES_ONLY = {"gligen"}
"""Backends whose images follow the layout's boxes but not its masks."""


def label_kind(backend: str) -> str:
    """"masks" when the images follow the layout's masks, "boxes" when only its boxes."""
    return "boxes" if backend in BOXES_ONLY else "masks"


_LOAD_LOCK = threading.Lock()


@lru_cache(maxsize=4)
def _load_cached(spec_json: str):
    spec = ModelSpec.model_validate_json(spec_json)
    log.info("loading backend %s from %s", spec.backend, spec.path or "embedded weights")
    return LOADERS[spec.backend](spec)


def load_backend(spec: ModelSpec):
    """The backend for ``spec``, loaded once per process."""
    if spec.backend not in LOADERS:
        raise ValueError(f"model.backend: unknown backend {spec.backend!r}; "
                         f"allowed: {sorted(LOADERS)}")
    with _LOAD_LOCK:  # shards start together in threads: load the weights once, not per shard
        return _load_cached(spec.model_dump_json())
