"""What the backends of the embedded diffusion pipelines (``shapes-tiny``, ``tones-tiny``) share:
loading a diffusers folder (the embedded assets by default), a private scheduler per call, and a
float32 copy of the pipeline for the NaN retry of half-precision runs."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path

import torch
from diffusers import DiffusionPipeline

from augment.config.base import BackendSpec
from augment.core.devices import resolve_device, resolve_dtype
from augment.core.schedulers import make_scheduler
from augment.core.weights import resolve_model_path, weights_hash


@dataclass
class EmbeddedBackend:
    """A loaded pipeline of an embedded model; a subclass adds ``render``."""

    pipe: DiffusionPipeline
    model_id: str
    weights: str
    device: torch.device
    dtype: torch.dtype
    _fp32: DiffusionPipeline | None = field(default=None, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @classmethod
    def load(cls, pipeline: type[DiffusionPipeline], spec: BackendSpec, embedded: Path,
             what: str) -> "EmbeddedBackend":
        """Load ``pipeline`` from ``spec.path`` (None: the ``embedded`` folder) on the spec's
        device and dtype; ``FileNotFoundError`` naming ``what`` and the folder when it fails."""
        folder = resolve_model_path(spec.path, embedded)
        device = resolve_device(spec.device)
        dtype = resolve_dtype(spec.dtype, device)
        try:
            pipe = pipeline.from_pretrained(folder, dtype=dtype)
        except (OSError, ValueError, EnvironmentError) as exc:
            raise FileNotFoundError(f"cannot load {what} weights from {folder}: {exc}") from exc
        pipe.to(device)
        pipe.unet.to(memory_format=torch.channels_last)  # ~25% faster convolutions on CPU
        return cls(pipe=pipe, model_id=str(folder), weights=weights_hash(folder), device=device,
                   dtype=dtype)

    def sampling_pipe(self, scheduler: str, force_fp32: bool = False) -> DiffusionPipeline:
        """The pipeline (its float32 copy with ``force_fp32``) with a private scheduler of kind
        ``scheduler``: schedulers hold per-run state and shards may share the unet. No progress
        bar."""
        base = self._fp32_pipe() if force_fp32 else self.pipe
        settings = {k: v for k, v in base.config.items()
                    if not k.startswith("_") and k not in base.components}
        pipe = type(base)(**{**base.components, **settings,
                             "scheduler": make_scheduler(scheduler, base.scheduler)})
        pipe.set_progress_bar_config(disable=True)
        return pipe

    def prompt(self, condition, sampler) -> None:
        """The embedded models take no text prompt."""
        return None

    def _fp32_pipe(self) -> DiffusionPipeline:
        if self.dtype == torch.float32:
            return self.pipe
        with self._lock:
            if self._fp32 is None:
                self._fp32 = type(self.pipe).from_pretrained(self.model_id, dtype=torch.float32)
                self._fp32.to(self.device)
            return self._fp32
