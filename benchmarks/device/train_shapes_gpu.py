"""How the shipped ``shapes-tiny`` weights were trained on a lent GPU (one H100, < 10 minutes).

Measures the step time first, then trains for as many steps as fit in ``--minutes`` with the
shipped recipe (``TrainShapesSpec`` defaults, batch 256), writes the pipeline to ``--out`` and a
sample grid beside it. On a CPU-only machine use ``synthmill train shapes`` (slow but identical
recipe).
"""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from augment.config.image import ShapesLayoutSpec
from augment.config.training import TrainShapesSpec
from augment.image.layouts import sample_layout
from augment.image.pipelines.shapes_tiny import ShapesTinyPipeline, make_unet
from augment.image.training.generator import train_shapes_generator


def step_seconds(batch: int, resolution: int = 64) -> float:
    unet = make_unet(resolution).cuda().to(memory_format=torch.channels_last)
    opt = torch.optim.AdamW(unet.parameters())
    x = torch.randn(batch, unet.config.in_channels, resolution, resolution, device="cuda")
    t = torch.randint(0, 1000, (batch,), device="cuda")
    for i in range(25):
        if i == 5:
            torch.cuda.synchronize()
            start = time.time()
        with torch.autocast("cuda", dtype=torch.bfloat16):
            loss = unet(x, t).sample.float().pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    torch.cuda.synchronize()
    return (time.time() - start) / 20


def main() -> None:
    recipe = TrainShapesSpec()
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--minutes", type=float, default=6.5)
    parser.add_argument("--batch", type=int, default=recipe.batch_size)
    parser.add_argument("--scenes", type=int, default=recipe.num_scenes)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO)
    per_step = step_seconds(args.batch) * 1.15  # EMA, batch assembly
    steps = int(args.minutes * 60 / per_step) // 100 * 100
    print(f"step {per_step * 1000:.1f} ms -> {steps} steps", flush=True)
    spec = TrainShapesSpec(steps=steps, batch_size=args.batch, num_scenes=args.scenes, device="cuda")
    train_shapes_generator(spec, args.out)
    pipe = ShapesTinyPipeline.from_pretrained(args.out, dtype=torch.float32).to("cuda")
    pipe.set_progress_bar_config(disable=True)
    layouts = [sample_layout(ShapesLayoutSpec(), 123, i) for i in range(64)]
    gens = [torch.Generator("cuda").manual_seed(i) for i in range(64)]
    images = pipe.from_layouts(layouts, generator=gens, num_inference_steps=20,
                               guidance_scale=2.0).images
    grid = (images.reshape(8, 8, 64, 64, 3).transpose(0, 2, 1, 3, 4).reshape(512, 512, 3) * 255)
    Image.fromarray(grid.round().astype(np.uint8)).save(args.out / "samples.png")


if __name__ == "__main__":
    main()
