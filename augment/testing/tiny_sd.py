"""Random-weight Stable Diffusion components, saved as diffusers folders, for tests and benchmarks.

``save_sd_folder(out, backend, shape)`` writes what a user would download for a backend (a
pipeline folder with ``model_index.json``, and for ``controlnet-seg`` a ControlNet folder) with
random weights, so every real code path runs offline through the same loader:

- ``shape="tiny"``: a few hundred thousand parameters; 64x64 images become 16x16 latents (a
  3-level VAE), fast enough for CPU tests.
- ``shape="sd15"``: the Stable Diffusion 1.5 architecture (860 M-parameter UNet, 8x VAE,
  12-layer 768-wide CLIP text encoder); random weights time the same as trained ones.

The tokenizer is a character-level CLIP BPE written here (its ids are not CLIP's; what matters is
the padded length of 77 tokens). ``save_tiny_open_clip`` writes an open_clip config file and random
weights for the CLIP verification.
"""

from __future__ import annotations

import json
from pathlib import Path

import open_clip
import torch
from diffusers import AutoencoderKL, ControlNetModel, DDIMScheduler, UNet2DConditionModel
from safetensors.torch import save_file
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

# as on the hub: a ControlNet is its own repository beside a plain Stable Diffusion one
PIPELINE_CLASSES = {"controlnet-seg": "StableDiffusionPipeline",
                    "gligen": "StableDiffusionGLIGENPipeline",
                    "inpaint-paste": "StableDiffusionInpaintPipeline"}

_TINY_TEXT = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4)
_SD15_TEXT = dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=12,
                  num_attention_heads=12)


def write_clip_tokenizer(folder: str | Path) -> CLIPTokenizer:
    """A CLIP BPE tokenizer over lower-case letters and a little punctuation (no merges)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for char in "abcdefghijklmnopqrstuvwxyz0123456789,.-'":
        vocab[char] = len(vocab)
        vocab[char + "</w>"] = len(vocab)
    (folder / "vocab.json").write_text(json.dumps(vocab))
    (folder / "merges.txt").write_text("#version: 0.2\n")
    tokenizer = CLIPTokenizer(str(folder / "vocab.json"), str(folder / "merges.txt"),
                              model_max_length=77)
    tokenizer.save_pretrained(folder)
    return tokenizer


def text_encoder(shape: str, tokenizer: CLIPTokenizer) -> CLIPTextModel:
    sizes = _TINY_TEXT if shape == "tiny" else _SD15_TEXT
    config = CLIPTextConfig(vocab_size=max(len(tokenizer), 49408 if shape == "sd15" else 0),
                            max_position_embeddings=77, hidden_act="quick_gelu",
                            bos_token_id=tokenizer.bos_token_id,
                            eos_token_id=tokenizer.eos_token_id,
                            pad_token_id=tokenizer.pad_token_id, **sizes)
    return CLIPTextModel(config)


def unet(shape: str, backend: str) -> UNet2DConditionModel:
    """The denoiser: 9 input channels for inpainting, gated attention for GLIGEN."""
    extra = {"in_channels": 9 if backend == "inpaint-paste" else 4, "out_channels": 4,
             "attention_type": "gated" if backend == "gligen" else "default"}
    if shape == "tiny":
        return UNet2DConditionModel(
            sample_size=16, block_out_channels=(32, 64), layers_per_block=1,
            down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
            up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"), cross_attention_dim=32,
            attention_head_dim=8, norm_num_groups=8, **extra)
    return UNet2DConditionModel(sample_size=64, cross_attention_dim=768, **extra)


def vae(shape: str) -> AutoencoderKL:
    if shape == "tiny":
        return AutoencoderKL(block_out_channels=(8, 16, 16), layers_per_block=1,
                             down_block_types=("DownEncoderBlock2D",) * 3,
                             up_block_types=("UpDecoderBlock2D",) * 3, latent_channels=4,
                             norm_num_groups=8, sample_size=64)
    return AutoencoderKL(block_out_channels=(128, 256, 512, 512), layers_per_block=2,
                         down_block_types=("DownEncoderBlock2D",) * 4,
                         up_block_types=("UpDecoderBlock2D",) * 4, latent_channels=4,
                         sample_size=512)


def controlnet(denoiser: UNet2DConditionModel, shape: str) -> ControlNetModel:
    """A ControlNet copied from the UNet; its condition encoder downsamples as much as the VAE."""
    channels = (8, 16, 16) if shape == "tiny" else (16, 32, 96, 256)
    return ControlNetModel.from_unet(denoiser, conditioning_embedding_out_channels=channels)


def scheduler() -> DDIMScheduler:
    """Stable Diffusion's training noise schedule."""
    return DDIMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                         clip_sample=False, set_alpha_to_one=False, steps_offset=1)


def save_sd_folder(out: str | Path, backend: str, shape: str = "tiny", seed: int = 0,
                   dtype: torch.dtype = torch.float32) -> tuple[Path, Path | None]:
    """Write random-weight folders for ``backend``; returns (pipeline folder, ControlNet folder
    or None)."""
    if backend not in PIPELINE_CLASSES or shape not in ("tiny", "sd15"):
        raise ValueError(f"no random components for backend {backend!r}, shape {shape!r}")
    out = Path(out)
    torch.manual_seed(seed)
    tokenizer = write_clip_tokenizer(out / backend / "tokenizer")
    denoiser = unet(shape, backend)
    components = {"unet": denoiser, "vae": vae(shape), "text_encoder": text_encoder(shape, tokenizer)}
    if backend == "controlnet-seg":
        components["controlnet"] = controlnet(denoiser, shape)
    for name, module in components.items():
        folder = out / backend / name if name != "controlnet" else out / "controlnet-seg-cn"
        _cast(module, dtype).save_pretrained(folder, safe_serialization=True)
    scheduler().save_pretrained(out / backend / "scheduler")
    index = {"_class_name": PIPELINE_CLASSES[backend], "_diffusers_version": "0.42.1",
             "feature_extractor": [None, None], "safety_checker": [None, None],
             "requires_safety_checker": False, "scheduler": ["diffusers", "DDIMScheduler"],
             "text_encoder": ["transformers", "CLIPTextModel"],
             "tokenizer": ["transformers", "CLIPTokenizer"],
             "unet": ["diffusers", "UNet2DConditionModel"],
             "vae": ["diffusers", "AutoencoderKL"]}
    (out / backend / "model_index.json").write_text(json.dumps(index, indent=2))
    return out / backend, out / "controlnet-seg-cn" if backend == "controlnet-seg" else None


def _cast(module: torch.nn.Module, dtype: torch.dtype) -> torch.nn.Module:
    return module if dtype == torch.float32 else module.to(dtype)


TINY_OPEN_CLIP = {
    "embed_dim": 64,
    "vision_cfg": {"image_size": 32, "layers": 2, "width": 64, "patch_size": 8},
    "text_cfg": {"context_length": 32, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 2},
}


def save_tiny_open_clip(out: str | Path, seed: int = 0) -> tuple[Path, Path]:
    """A 2-layer open_clip model: (config file, random weights .safetensors)."""

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    config = out / "tiny-clip.json"
    config.write_text(json.dumps(TINY_OPEN_CLIP))
    torch.manual_seed(seed)
    model = open_clip.CLIP(**TINY_OPEN_CLIP)
    weights = out / "tiny-clip.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(weights))
    return config, weights
