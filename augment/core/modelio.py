"""Small ``torch.nn.Module`` models as a folder: ``config.json`` (the constructor's arguments) and
``model.safetensors`` (the weights, fp16 by default). Safetensors only: nothing is unpickled.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save

from augment.core.io import atomic_write_bytes, atomic_write_json

WEIGHTS_NAME = "model.safetensors"
CONFIG_NAME = "config.json"


def save_module(model: torch.nn.Module, config: dict, out_dir: str | Path,
                dtype: torch.dtype = torch.float16) -> Path:
    """Write ``out_dir/model.safetensors`` (floating tensors cast to ``dtype``) and
    ``out_dir/config.json`` (``config``, the keyword arguments that rebuild ``model``), atomically."""
    out_dir = Path(out_dir)
    state = {k: (v.detach().to("cpu", dtype) if v.is_floating_point() else v.detach().cpu())
             .contiguous() for k, v in model.state_dict().items()}
    atomic_write_bytes(out_dir / WEIGHTS_NAME, save(state))
    atomic_write_json(out_dir / CONFIG_NAME, config)
    return out_dir


def load_module(cls: type[torch.nn.Module], config_file: Path, weights_file: Path, what: str,
                device: str | torch.device = "cpu") -> torch.nn.Module:
    """``cls(**config)`` with the weights of ``weights_file`` (floating tensors cast to float32), in
    eval mode on ``device``. Raises ``FileNotFoundError`` / ``ValueError`` naming the missing or
    unusable file; ``what`` names the model in those messages (e.g. "shapes checker")."""
    for file in (config_file, weights_file):
        if not file.is_file():
            raise FileNotFoundError(f"{file}: {what} file not found")
    try:
        model = cls(**json.loads(config_file.read_text(encoding="utf-8")))
    except (json.JSONDecodeError, UnicodeDecodeError, TypeError, ValueError) as exc:
        raise ValueError(f"{config_file}: not a valid {what} config: {exc}") from exc
    try:
        state = {k: v.float() if v.is_floating_point() else v for k, v in load_file(weights_file).items()}
        model.load_state_dict(state, strict=True)
    except (SafetensorError, RuntimeError) as exc:
        raise ValueError(f"{weights_file}: not valid {what} weights: {exc}") from exc
    return model.to(device).eval()
