"""DDPM training of the embedded condition-concatenated UNets (``shapes-tiny``, ``tones-tiny``).

Algorithm 1 of Ho et al. 2020 with the epsilon objective on a cosine schedule (Nichol & Dhariwal
2021), optional min-SNR-gamma loss weights (Hang et al. 2023), an exponential moving average of the
weights, AdamW under a cosine learning-rate schedule with warm-up. Condition dropout (for
classifier-free guidance, Ho & Salimans 2022) is the data's business: the trainer's ``draw``
returns batches whose conditions are already dropped where they should be.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable
from typing import Literal, Protocol

import torch
import torch.nn.functional as F
from diffusers import DDPMScheduler, UNet2DModel
from diffusers.optimization import get_cosine_schedule_with_warmup
from diffusers.training_utils import EMAModel

from augment.core.training import Optimisation, Stats, Stopwatch, autocast, train_loop

Prediction = Literal["epsilon", "v_prediction"]


class DiffusionRecipe(Protocol):
    """The fields of a trainer spec that ``fit_ddpm`` reads."""

    steps: int
    learning_rate: float
    warmup_steps: int
    ema_decay: float
    snr_gamma: float | None
    mixed_precision: Literal["no", "bf16", "fp16"]
    log_every: int


def noise_schedule(prediction_type: Prediction = "epsilon") -> DDPMScheduler:
    """The training noise schedule shipped with the models (samplers are built from its config).

    The cosine schedule reaches alpha_bar ~ 2e-6 at t = 999, where an epsilon model's x0 estimate
    divides by sqrt(alpha_bar): a model of data in [-1, 1] must clip x0 to that range there. So the
    shipped config turns on dynamic thresholding (Saharia et al. 2022, Imagen) and x0 clipping,
    which every sampler built ``from_config`` inherits. ``prediction_type``: what the UNet
    predicts, the noise (``epsilon``) or v = sqrt(alpha_bar) eps - sqrt(1 - alpha_bar) x0
    (``v_prediction``, Salimans & Ho 2022), which learns the data's mean at high noise directly
    (data far from zero mean, such as mostly silent spectrograms, need it).
    """
    return DDPMScheduler(num_train_timesteps=1000, beta_schedule="squaredcos_cap_v2",
                         prediction_type=prediction_type, clip_sample=True, clip_sample_range=1.0,
                         thresholding=True, sample_max_value=1.0)


def snr_weight(alpha_bar: torch.Tensor, gamma: float | None,
               prediction_type: Prediction = "epsilon") -> torch.Tensor:
    """Min-SNR-gamma loss weights (Hang et al. 2023): min(SNR, g) / SNR for the epsilon objective,
    min(SNR, g) / (SNR + 1) for v; ones when ``gamma`` is None. ``alpha_bar``: (B,) -> (B,)."""
    if gamma is None:
        return torch.ones_like(alpha_bar)
    snr = alpha_bar / (1 - alpha_bar)
    return snr.clamp(max=gamma) / (snr + 1 if prediction_type == "v_prediction" else snr)


def fit_ddpm(spec: DiffusionRecipe, unet: UNet2DModel, schedule: DDPMScheduler,
             draw: Callable[[], tuple[torch.Tensor, torch.Tensor]], gen: torch.Generator,
             watch: Stopwatch, desc: str) -> list[dict]:
    """Train ``unet`` on ``draw()`` batches and return the loss curve (with the learning rate and
    the seconds so far); ``unet`` holds the EMA weights at the end.

    ``draw()`` returns (x0 (B, K, H, W) float32 in [-1, 1], condition (B, C, H, W) float32), on
    the UNet's device; ``unet`` takes K + C channels and predicts the K-channel target of
    ``schedule`` (``noise_schedule``: its alphas and prediction type). ``gen`` (on that device)
    draws the noise and timesteps; a ``draw`` that uses it too stays reproducible because the
    order of draws is fixed. Gradient norm clipped at 1.
    """
    device = next(unet.parameters()).device
    ema = EMAModel(unet.parameters(), decay=spec.ema_decay, use_ema_warmup=True, power=0.75)
    ema.to(device)
    alphas = schedule.alphas_cumprod.to(device)
    prediction = schedule.config.prediction_type
    optimizer = torch.optim.AdamW(unet.parameters(), lr=spec.learning_rate, weight_decay=0.0)
    lr_schedule = get_cosine_schedule_with_warmup(optimizer, spec.warmup_steps, spec.steps)
    mixed_precision = autocast(device, spec.mixed_precision)

    def loss(batch: tuple[torch.Tensor, torch.Tensor]) -> Stats:
        x0, condition = batch
        noise = torch.randn(x0.shape, generator=gen, device=device)
        t = torch.randint(0, len(alphas), (x0.shape[0],), generator=gen, device=device)
        a = alphas[t].view(-1, 1, 1, 1)
        noisy = a.sqrt() * x0 + (1 - a).sqrt() * noise  # q(x_t | x_0), Ho et al. eq. 4
        with mixed_precision:
            pred = unet(torch.cat([noisy, condition], dim=1), t).sample
        target = noise if prediction == "epsilon" else a.sqrt() * noise - (1 - a).sqrt() * x0
        per_sample = F.mse_loss(pred.float(), target, reduction="none").mean(dim=(1, 2, 3))
        return {"loss": (snr_weight(a.view(-1), spec.snr_gamma, prediction) * per_sample).mean()}

    optimisation = Optimisation(optimizer, lr_schedule, clip_grad_norm=1.0, ema=ema)
    curve = train_loop(draw, loss, optimisation, spec.steps, spec.log_every, desc,
                       lambda: {"lr": lr_schedule.get_last_lr()[0], "seconds": watch.seconds()})
    ema.copy_to(unet.parameters())
    return curve


def curve_csv(rows: list[dict]) -> str:
    """A loss curve as CSV text: a header, then one line per row."""
    text = io.StringIO(newline="")
    writer = csv.DictWriter(text, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
    return text.getvalue()
