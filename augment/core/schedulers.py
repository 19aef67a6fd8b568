"""Diffusers schedulers chosen by name; each is built ``from_config`` of the model's own scheduler,
so the noise schedule the model was trained with is kept.

``SCHEDULER_CLASSES`` is the one list of names (configs validate against it); the classes are
looked up in ``diffusers`` only when a scheduler is made, so importing this module stays cheap.
"""

from __future__ import annotations

SCHEDULER_CLASSES: dict[str, tuple[str, dict]] = {
    "ddpm": ("DDPMScheduler", {}),
    "ddim": ("DDIMScheduler", {}),
    "dpmsolver++": ("DPMSolverMultistepScheduler", {"algorithm_type": "dpmsolver++",
                                                     "solver_order": 2}),
    "unipc": ("UniPCMultistepScheduler", {}),
    "euler": ("EulerDiscreteScheduler", {}),
}
SCHEDULERS = tuple(SCHEDULER_CLASSES)


def make_scheduler(name: str, base):
    """A fresh scheduler of kind ``name`` with ``base``'s (a diffusers scheduler) noise schedule."""
    import diffusers  # heavy (~3 s): only when a model is about to run

    try:
        class_name, overrides = SCHEDULER_CLASSES[name]
    except KeyError:
        raise ValueError(f"unknown scheduler {name!r}; allowed: {list(SCHEDULERS)}") from None
    return getattr(diffusers, class_name).from_config(base.config, **overrides)
