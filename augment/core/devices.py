"""Device and dtype names from configs -> torch objects."""

from __future__ import annotations

import torch

from augment.config.base import DTYPES

TORCH_DTYPES = {name: getattr(torch, name) for name in DTYPES}


def resolve_device(name: str) -> torch.device:
    """'auto' -> cuda when available else cpu; 'cuda' without a GPU is an error that says so."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"device {name!r} was asked for but no CUDA GPU is available; "
                           "use device: cpu (or auto)")
    return device


def resolve_dtype(name: str, device: torch.device) -> torch.dtype:
    """Half precision on the CPU is slow and poorly supported: fall back to float32 there."""
    dtype = TORCH_DTYPES[name]
    return torch.float32 if device.type == "cpu" else dtype
