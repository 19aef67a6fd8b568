"""The shared training loop (``augment.core.training``) on tiny models built in the test."""

from __future__ import annotations

import json

import torch
import torch.nn.functional as F

from augment.config.base import Strict
from augment.core.training import (Optimisation, Stopwatch, adamw_one_cycle, autocast, train_loop,
                                   window_means, write_report)

TRUE_WEIGHTS = torch.tensor([[1.5, -2.0, 0.5, 3.0]])  # (1, 4)


def _fit_linear(seed: int, steps: int = 300) -> tuple[torch.nn.Linear, list[dict]]:
    """A linear model fitted to y = x @ TRUE_WEIGHTS.T from random init, with seeded batches."""
    torch.manual_seed(seed)
    model = torch.nn.Linear(4, 1)
    gen = torch.Generator().manual_seed(seed)

    def draw() -> tuple[torch.Tensor, torch.Tensor]:
        x = torch.randn(16, 4, generator=gen)
        return x, x @ TRUE_WEIGHTS.T

    def loss(batch: tuple[torch.Tensor, torch.Tensor]) -> dict[str, torch.Tensor]:
        x, y = batch
        return {"loss": F.mse_loss(model(x), y)}

    optimisation = Optimisation(*adamw_one_cycle(model.parameters(), 0.1, steps, weight_decay=0.0))
    return model, train_loop(draw, loss, optimisation, steps, log_every=100, desc="linear")


def test_loop_fits_a_linear_model():
    model, curve = _fit_linear(seed=0)
    assert [row["step"] for row in curve] == [100, 200, 300]
    assert curve[-1]["loss"] < 1e-3 * curve[0]["loss"]
    torch.testing.assert_close(model.weight.detach(), TRUE_WEIGHTS, atol=1e-2, rtol=0)


def test_loop_is_seed_deterministic():
    (a, curve_a), (b, curve_b), (c, _) = _fit_linear(1, 20), _fit_linear(1, 20), _fit_linear(2, 20)
    assert curve_a == curve_b
    assert all(torch.equal(p, q) for p, q in zip(a.state_dict().values(), b.state_dict().values()))
    assert not torch.equal(a.weight, c.weight)


def test_curve_has_window_means_at_log_every_and_the_last_step_then_extras():
    weight = torch.nn.Parameter(torch.zeros(1))
    optimisation = Optimisation(*adamw_one_cycle([weight], 0.1, 7))
    steps = iter(range(1, 8))
    curve = train_loop(lambda: float(next(steps)),
                       lambda k: {"loss": weight.sum() * 0 + k, "k": torch.tensor(k)},
                       optimisation, 7, log_every=3, desc="windows", extra=lambda: {"tag": "x"})
    assert curve == [{"step": 3, "loss": 2.0, "k": 2.0, "tag": "x"},
                     {"step": 6, "loss": 5.0, "k": 5.0, "tag": "x"},
                     {"step": 7, "loss": 7.0, "k": 7.0, "tag": "x"}]
    assert window_means([{"a": torch.tensor(1 / 3)}]) == {"a": 0.33333}


def test_optimisation_clips_then_steps_then_averages_then_runs_after_step():
    weight = torch.nn.Parameter(torch.zeros(3))
    calls = []

    class RecordingAverage:
        def step(self, parameters):
            calls.append(("ema", [p.detach().clone() for p in parameters]))

    optimizer = torch.optim.SGD([weight], lr=1.0)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    optimisation = Optimisation(optimizer, schedule, clip_grad_norm=1.0, ema=RecordingAverage(),
                                after_step=lambda: calls.append(("after", None)))
    optimisation.step((weight * torch.tensor([300.0, 400.0, 0.0])).sum())  # gradient norm 500
    torch.testing.assert_close(weight.detach(), torch.tensor([-0.6, -0.8, 0.0]))  # unit-norm step
    assert [name for name, _ in calls] == ["ema", "after"]
    torch.testing.assert_close(calls[0][1][0], weight.detach())  # the EMA saw the updated weights


def test_autocast_is_off_on_the_cpu():
    with autocast(torch.device("cpu"), "bf16"):
        assert (torch.ones(2, 2) @ torch.ones(2, 2)).dtype == torch.float32


class _Recipe(Strict):
    steps: int = 3
    widths: tuple[int, ...] = (4, 8)


def test_report_holds_the_recipe_figures_and_times(tmp_path):
    watch = Stopwatch()
    watch.end_training()
    report = write_report(tmp_path, _Recipe(), watch, torch.device("cpu"), {"held_out": {"acc": 0.5}},
                          {"world": {"height": 64}})
    assert json.loads((tmp_path / "training.json").read_text()) == report
    assert report["recipe"] == {"steps": 3, "widths": [4, 8], "world": {"height": 64}}
    assert report["held_out"] == {"acc": 0.5} and report["device"] == "cpu"
    assert 0 <= report["train_seconds"] <= report["seconds"]
