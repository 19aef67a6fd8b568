"""Classifier-free guided reverse diffusion for the embedded condition-concatenated UNets.

Every embedded generator (``shapes-tiny``, ``tones-tiny``) is a ``UNet2DModel`` that denoises its
sample with the condition concatenated to the noisy input channels (the SR3 / Palette recipe,
Saharia et al. 2021), trained with condition dropout so that classifier-free guidance (Ho &
Salimans 2022) mixes a conditional and an unconditional prediction at sampling time. The pipelines
differ in how they encode a condition and decode a sample; the denoising loop and its argument
checks are this module's.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable

import torch
from diffusers import UNet2DModel
from diffusers.schedulers.scheduling_utils import SchedulerMixin
from diffusers.utils.torch_utils import randn_tensor

Generators = torch.Generator | list[torch.Generator] | None


def check_condition(condition, expected: tuple[int, ...], encoder: str) -> None:
    """ValueError unless ``condition`` is a (B, *expected) tensor; ``encoder`` names the function
    that makes one (for the message)."""
    if not isinstance(condition, torch.Tensor) or condition.ndim != 1 + len(expected) \
            or tuple(condition.shape[1:]) != tuple(expected):
        got = tuple(condition.shape) if isinstance(condition, torch.Tensor) else type(condition)
        raise ValueError(f"`condition` must be a (B, {', '.join(map(str, expected))}) tensor "
                         f"(see {encoder}); got {got}")


def check_sampling_args(batch: int, generator: Generators, num_inference_steps: int,
                        guidance_scale: float, noise_temperature: float) -> None:
    """ValueError naming the argument when a sampling call cannot run as asked."""
    if isinstance(generator, list) and len(generator) != batch:
        raise ValueError(f"got {len(generator)} generators for a batch of {batch}; "
                         "pass one per sample")
    if num_inference_steps < 1:
        raise ValueError(f"`num_inference_steps` must be >= 1, got {num_inference_steps}")
    if guidance_scale < 0:
        raise ValueError(f"`guidance_scale` must be >= 0, got {guidance_scale}")
    if noise_temperature <= 0:
        raise ValueError(f"`noise_temperature` must be > 0, got {noise_temperature}")


def scheduler_step_kwargs(scheduler: SchedulerMixin, generator: Generators, eta: float) -> dict:
    """The keyword arguments of ``scheduler.step`` it accepts among ``eta`` (DDIM) and
    ``generator`` (the stochastic samplers' fresh noise, drawn per sample from a list)."""
    params = set(inspect.signature(scheduler.step).parameters)
    kwargs = {}
    if "eta" in params:
        kwargs["eta"] = eta
    if "generator" in params:
        kwargs["generator"] = generator
    return kwargs


def guided_denoise(unet: UNet2DModel, scheduler: SchedulerMixin, condition: torch.Tensor,
                   null_condition: torch.Tensor, shape: tuple[int, ...], num_inference_steps: int,
                   guidance_scale: float, eta: float, noise_temperature: float,
                   generator: Generators,
                   progress: Callable[[Iterable], Iterable] = lambda steps: steps) -> torch.Tensor:
    """Run the reverse diffusion of ``scheduler`` from noise to a sample (DDPM, Ho et al. 2020,
    or any diffusers sampler) with classifier-free guidance.

    Args:
        condition: (B, C, H, W) on the UNet's device and dtype, concatenated to the noisy sample.
        null_condition: (B, C, H, W), the "no condition" input of the unconditional prediction
            (what condition dropout fed the model in training).
        shape: (B, K, H, W) of the sample; ``unet`` takes K + C channels and predicts K.
        guidance_scale: w in eps_uncond + w * (eps_cond - eps_uncond); 1 = no guidance (one UNet
            pass per step), 0 = unconditional.
        noise_temperature: scale of the initial noise.
        generator: one per sample (a list of B) keeps each sample reproducible alone.
        progress: wraps the timesteps, e.g. a pipeline's ``progress_bar``.
    Returns:
        (B, K, H, W) in the UNet's dtype: the denoised sample (in the training data's range).
    """
    device, dtype = condition.device, condition.dtype
    do_cfg = guidance_scale != 1.0
    if do_cfg:  # (2B, C, H, W): unconditional half first
        condition = torch.cat([null_condition.to(device, dtype), condition])
    latents = randn_tensor(shape, generator=generator, device=device, dtype=dtype)
    scheduler.set_timesteps(num_inference_steps, device=device)
    latents = latents * noise_temperature * scheduler.init_noise_sigma
    step_kwargs = scheduler_step_kwargs(scheduler, generator, eta)
    for t in progress(scheduler.timesteps):
        model_in = torch.cat([latents, latents]) if do_cfg else latents
        model_in = scheduler.scale_model_input(model_in, t)
        noise_pred = unet(torch.cat([model_in, condition], dim=1), t).sample
        if do_cfg:
            uncond, cond = noise_pred.chunk(2)
            noise_pred = uncond + guidance_scale * (cond - uncond)
        latents = scheduler.step(noise_pred, t, latents, **step_kwargs).prev_sample
    return latents
