"""Log-mel spectrograms of the tones world, and back to waveforms with Griffin-Lim.

One representation for everything that learns from audio here (the tones classifier, the
``tones-tiny`` generator, audio evaluation features): 16 kHz, a 1024-point STFT with hop 256
(16 ms), 64 mel bands from 50 Hz to 8 kHz (Slaney scale and norm), natural log of power + 1e-5.
The inverse maps mel power back to linear frequency with the filterbank's pseudo-inverse
(non-negative) and runs torchaudio's Griffin-Lim (Griffin & Lim 1984) for the phase.
"""

from __future__ import annotations

from functools import lru_cache

import torch
import torchaudio

from augment.audio.world import SAMPLE_RATE

N_FFT = 1024
HOP = 256
N_MELS = 64
F_MIN, F_MAX = 50.0, 8000.0
LOG_FLOOR = 1e-5


@lru_cache(maxsize=4)
def _mel(device: str) -> torchaudio.transforms.MelSpectrogram:
    return torchaudio.transforms.MelSpectrogram(
        sample_rate=SAMPLE_RATE, n_fft=N_FFT, hop_length=HOP, n_mels=N_MELS, f_min=F_MIN,
        f_max=F_MAX, power=2.0, norm="slaney", mel_scale="slaney").to(device)


def num_frames(samples: int) -> int:
    """Frames of a ``samples``-long waveform (centred STFT)."""
    return samples // HOP + 1


@torch.no_grad()
def log_mel(wave: torch.Tensor) -> torch.Tensor:
    """float waveform (B, N) in [-1, 1] -> log-mel (B, N_MELS, N // HOP + 1) float32."""
    return torch.log(_mel(str(wave.device))(wave.float()) + LOG_FLOOR)


@torch.no_grad()
def griffin_lim(log_mels: torch.Tensor, samples: int, n_iter: int = 32,
                seed: int = 0) -> torch.Tensor:
    """log-mel (B, N_MELS, T) -> waveform (B, samples) float32, by ``n_iter`` Griffin-Lim
    iterations from a random phase drawn with ``seed`` (so the result is deterministic)."""
    fb = _mel(str(log_mels.device)).mel_scale.fb  # (N_FFT // 2 + 1, N_MELS)
    power = (torch.exp(log_mels.float()) - LOG_FLOOR).clamp_min(0)  # (B, M, T)
    magnitude = (torch.linalg.pinv(fb.T) @ power).clamp_min(0).sqrt()  # (B, F, T)
    generator = torch.Generator(device="cpu").manual_seed(seed)
    phase = (torch.rand(magnitude.shape, generator=generator) * 2 * torch.pi).to(magnitude.device)
    window = torch.hann_window(N_FFT, device=magnitude.device)
    wave = torch.istft(magnitude * torch.exp(1j * phase), N_FFT, HOP, window=window, length=samples)
    for _ in range(n_iter):
        spec = torch.stft(wave, N_FFT, HOP, window=window, return_complex=True)
        wave = torch.istft(magnitude * torch.exp(1j * torch.angle(spec)), N_FFT, HOP,
                           window=window, length=samples)
    return wave.float()
