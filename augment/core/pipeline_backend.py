"""What every backend over a pretrained diffusers pipeline shares, whatever it makes: the model's
own noise schedule kept aside (a fresh scheduler of the chosen kind is built from it per batch),
one batch at a time, and a float32 copy of a half-precision pipeline, loaded the first time the
NaN guard retries a sample (``augment.core.backends.render_guarded``)."""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field

import torch

from augment.core.schedulers import make_scheduler

log = logging.getLogger(__name__)


@dataclass(kw_only=True)
class PipelineBackend:
    """A loaded pipeline; subclasses say how to build it again in another dtype (``rebuild``)."""

    pipe: object
    model_id: str
    weights: str
    device: torch.device
    dtype: torch.dtype
    _scheduler: object = field(default=None, init=False, repr=False)
    _fp32: object = field(default=None, init=False, repr=False)
    lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)

    def __post_init__(self):
        self._scheduler = self.pipe.scheduler  # the model's own noise schedule

    def rebuild(self, dtype: torch.dtype):
        """The same pipeline loaded again in ``dtype`` on ``self.device``."""
        raise NotImplementedError

    def pipe_for(self, force_fp32: bool, scheduler: str):
        """The pipeline to run (the float32 copy when ``force_fp32``), with a fresh scheduler of
        kind ``scheduler``; call it holding ``lock``: the scheduler is pipeline state."""
        pipe = self.pipe
        if force_fp32 and self.dtype != torch.float32:
            if self._fp32 is None:
                log.info("loading a float32 copy of %s for the NaN retry", self.model_id)
                self._fp32 = self.rebuild(torch.float32)
            pipe = self._fp32
        pipe.scheduler = self.scheduler_for(scheduler)
        return pipe

    def scheduler_for(self, name: str):
        """A fresh scheduler of kind ``name`` (``augment.core.schedulers``) with the model's own
        noise schedule; fresh per batch, so no sampler state outlives a batch."""
        return make_scheduler(name, self._scheduler)
