"""The optimisation loop every embedded model's trainer shares, and the report it writes.

A trainer states only what is its own (data, model, loss, held-out evaluation): it hands
``train_loop`` a ``draw`` function (the next batch) and a ``loss`` function (a batch -> the step's
statistics, ``"loss"`` among them). The loop owns the optimiser step and LR schedule, optional
gradient clipping and EMA (``Optimisation``), the progress bar and the loss curve: the mean of each
statistic over every ``log_every`` steps. ``write_report`` writes ``training.json``: the recipe
(the spec's ``model_dump``), the trainer's figures, the software and the wall time.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol

import torch
from pydantic import BaseModel
from tqdm.auto import tqdm

from augment.core.io import atomic_write_json

log = logging.getLogger(__name__)

REPORT_NAME = "training.json"

Stats = dict[str, torch.Tensor]
"""One step's statistics: scalar tensors; ``"loss"`` is the one minimised."""


class Stopwatch:
    """Wall time of one training run: from its start (scene rendering included) to now, and to the
    end of the optimisation (``end_training``)."""

    def __init__(self) -> None:
        self.start = time.time()
        self.train_seconds: float | None = None

    def seconds(self) -> float:
        """Seconds since the start, rounded to 0.1 s."""
        return round(time.time() - self.start, 1)

    def end_training(self) -> None:
        """Record ``train_seconds``: the optimisation is over, held-out evaluation follows."""
        self.train_seconds = self.seconds()


class WeightAverage(Protocol):
    """An exponential moving average of weights, e.g. ``diffusers.training_utils.EMAModel``."""

    def step(self, parameters: Iterable[torch.nn.Parameter]) -> None: ...


def adamw_one_cycle(params: Iterable, learning_rate: float, steps: int, weight_decay: float = 1e-4,
                    betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
                    ) -> tuple[torch.optim.AdamW, torch.optim.lr_scheduler.OneCycleLR]:
    """AdamW (Loshchilov & Hutter 2019) under a one-cycle schedule (Smith & Topin 2019): the
    learning rate rises to ``learning_rate`` over the first 10% of ``steps``, then anneals (cosine).
    ``params`` are parameters or parameter groups (a group's ``weight_decay`` wins)."""
    optimizer = torch.optim.AdamW(params, lr=learning_rate, weight_decay=weight_decay, betas=betas,
                                  eps=eps)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, learning_rate, total_steps=steps,
                                                   pct_start=0.1)
    return optimizer, schedule


@dataclass
class Optimisation:
    """How a loss becomes a weight update: backward, optional clipping of the gradients' global
    norm, the optimiser and schedule steps, then the optional EMA update and ``after_step`` (e.g. a
    clamp of a parameter), in that order."""

    optimizer: torch.optim.Optimizer
    schedule: torch.optim.lr_scheduler.LRScheduler
    clip_grad_norm: float | None = None
    ema: WeightAverage | None = None
    after_step: Callable[[], None] | None = None

    def parameters(self) -> list[torch.nn.Parameter]:
        """The optimised parameters, in the optimiser's order."""
        return [p for group in self.optimizer.param_groups for p in group["params"]]

    def step(self, loss: torch.Tensor) -> None:
        """One update from a scalar ``loss``."""
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if self.clip_grad_norm is not None:
            torch.nn.utils.clip_grad_norm_(self.parameters(), self.clip_grad_norm)
        self.optimizer.step()
        self.schedule.step()
        if self.ema is not None:
            self.ema.step(self.parameters())
        if self.after_step is not None:
            self.after_step()


def window_means(window: list[Stats]) -> dict[str, float]:
    """Mean of each statistic over the steps of ``window``, rounded to 5 decimals (computed in
    float64 on the statistics' device: one host sync per window, not per step)."""
    return {key: round(torch.stack([stats[key] for stats in window]).double().mean().item(), 5)
            for key in window[0]}


def train_loop(draw: Callable[[], Any], loss: Callable[[Any], Stats], optimisation: Optimisation,
               steps: int, log_every: int, desc: str,
               extra: Callable[[], dict[str, Any]] | None = None) -> list[dict[str, Any]]:
    """Run ``steps`` updates of ``loss(draw())`` and return the loss curve.

    The curve has a row every ``log_every`` steps and at the last step: ``step``, the window means
    of the statistics ``loss`` returns, then ``extra()`` (read after that step, e.g. the learning
    rate). The same draws and the same initial weights give the same weights on the same device.
    """
    curve, window = [], []
    bar = tqdm(range(1, steps + 1), desc=desc, mininterval=5)
    for step in bar:
        stats = loss(draw())
        optimisation.step(stats["loss"])
        window.append({key: value.detach() for key, value in stats.items()})
        if step % log_every == 0 or step == steps:
            curve.append({"step": step, **window_means(window), **(extra() if extra else {})})
            window.clear()
            bar.set_postfix(loss=f"{curve[-1]['loss']:.4f}")
            log.info("%s: %s", desc, curve[-1])
    return curve


def autocast(device: torch.device, precision: Literal["no", "bf16", "fp16"]) -> torch.autocast:
    """Mixed precision for forward passes: off for ``"no"`` and on the CPU, else bf16 or fp16."""
    if precision == "no" or device.type == "cpu":
        return torch.autocast(device.type, enabled=False)
    return torch.autocast(device.type, dtype=torch.bfloat16 if precision == "bf16" else torch.float16)


def parameter_count(model: torch.nn.Module) -> int:
    """Number of scalar parameters of ``model``, trained or frozen."""
    return sum(p.numel() for p in model.parameters())


def write_report(out_dir: str | Path, spec: BaseModel, watch: Stopwatch, device: torch.device,
                 figures: dict[str, Any], recipe_extras: dict[str, Any] | None = None) -> dict:
    """Write ``out_dir/training.json`` atomically and return its dict: ``recipe`` (the spec's
    ``model_dump`` and ``recipe_extras``, what the recipe fixes beyond the spec, e.g. the scene
    world), the trainer's ``figures`` (held-out metrics, loss curve, ...), then ``device``, the
    torch version and thread count, ``train_seconds`` and ``seconds`` (wall time so far)."""
    report = {"recipe": {**spec.model_dump(mode="json"), **(recipe_extras or {})}, **figures,
              "device": str(device), "torch": torch.__version__,
              "torch_threads": torch.get_num_threads(), "train_seconds": watch.train_seconds,
              "seconds": watch.seconds()}
    atomic_write_json(Path(out_dir) / REPORT_NAME, report)
    return report
