"""Stopping generation on request (Ctrl-C) within a fraction of a denoising step.

One process-wide stop request (``request_stop``), set by an entry point (the CLI's SIGINT handler)
and read everywhere else. The shard loop checks it between batches (``check_stop``), and
``watch_networks`` makes every network call of a backend a stop point: a forward pre-hook on each
network of its pipeline and on their top-level blocks, so any sampling loop (diffusers' own, the
embedded ``guided_denoise``, the GLIGEN batch loop) stops at its next block without knowing about
it. A stopped shard raises ``GenerationInterrupted`` and writes nothing it had not finished.
"""

from __future__ import annotations

import threading
import weakref
from contextlib import contextmanager

_STOP = threading.Event()
_WATCHED: "weakref.WeakSet" = weakref.WeakSet()
_ACTIVE = [0]  # shards running now (in any thread)
_ACTIVE_LOCK = threading.Lock()


class GenerationInterrupted(Exception):
    """Generation stopped at a stop request: the shards it finished are on disk and recorded, the
    stopped shard left no record and no partial file; running the same generation again resumes
    it."""


def request_stop() -> None:
    """Ask every running generation in this process to stop at its next stop point."""
    _STOP.set()


def clear_stop() -> None:
    """Forget a stop request (before a new run in the same process)."""
    _STOP.clear()


def stop_requested() -> bool:
    return _STOP.is_set()


def shards_running() -> int:
    """How many shards are inside ``stoppable`` now: a stop request reaches those at their next
    stop point; with none, nothing in this process is watching for it."""
    return _ACTIVE[0]


@contextmanager
def stoppable():
    """The block (a shard's generation) watches for stop requests (``shards_running``)."""
    with _ACTIVE_LOCK:
        _ACTIVE[0] += 1
    try:
        yield
    finally:
        with _ACTIVE_LOCK:
            _ACTIVE[0] -= 1


def check_stop(where: str) -> None:
    """``GenerationInterrupted`` naming ``where`` when a stop was requested."""
    if _STOP.is_set():
        raise GenerationInterrupted(f"stopped on request at {where}")


def _stop_point(module, args) -> None:
    if _STOP.is_set():
        raise GenerationInterrupted(f"stopped on request before {type(module).__name__}.forward")


def watch_networks(backend) -> None:
    """Make the networks of ``backend``'s pipeline (``backend.pipe``'s torch components: UNet,
    VAE, text encoders, ...) stop points, on each call and on each of their top-level blocks
    (a UNet's down, mid and up blocks): a stop request ends a sampling call within about a tenth
    of one denoising step. Idempotent; a backend without a pipeline (a procedural world) has no
    networks to watch. A component whose root is watched is skipped (its blocks were hooked with
    it), so a shard's call does not walk a large network's modules again."""
    import torch

    components = getattr(getattr(backend, "pipe", None), "components", None) or {}
    for component in components.values():
        if not isinstance(component, torch.nn.Module) or component in _WATCHED:
            continue
        for name, module in component.named_modules():
            # depth <= 2: "down_blocks.0", "mid_block", "conv_in" (a ModuleList is never called)
            if name.count(".") <= 1 and module not in _WATCHED:
                module.register_forward_pre_hook(_stop_point)
                _WATCHED.add(module)
