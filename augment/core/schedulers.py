"""Diffusers schedulers chosen by name; each is built ``from_config`` of the model's own scheduler,
so the noise schedule the model was trained with is kept."""

from __future__ import annotations

from diffusers import (DDIMScheduler, DDPMScheduler, DPMSolverMultistepScheduler,
                       EulerDiscreteScheduler, UniPCMultistepScheduler)
from diffusers.schedulers.scheduling_utils import SchedulerMixin

SCHEDULER_CLASSES = {
    "ddpm": (DDPMScheduler, {}),
    "ddim": (DDIMScheduler, {}),
    "dpmsolver++": (DPMSolverMultistepScheduler, {"algorithm_type": "dpmsolver++",
                                                   "solver_order": 2}),
    "unipc": (UniPCMultistepScheduler, {}),
    "euler": (EulerDiscreteScheduler, {}),
}


def make_scheduler(name: str, base: SchedulerMixin) -> SchedulerMixin:
    """A fresh scheduler of kind ``name`` with ``base``'s noise schedule."""
    try:
        cls, overrides = SCHEDULER_CLASSES[name]
    except KeyError:
        raise ValueError(f"unknown scheduler {name!r}; allowed: {sorted(SCHEDULER_CLASSES)}") from None
    return cls.from_config(base.config, **overrides)
