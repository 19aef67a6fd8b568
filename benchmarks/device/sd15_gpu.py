"""SD-1.5-sized backends on a CUDA GPU: our generation vs the bare diffusers pipeline, in fp16.

Random weights time the same as trained ones, so nothing is downloaded: the components are built
from the Stable Diffusion 1.5 architecture (``augment.testing.tiny_sd``, shape "sd15"), saved
as fp16 safetensors and loaded through our loader. For each batch size: 512x512, 20 steps,
guidance 7.5, shapes-world layouts. Ours = ``generate_dataset`` (layouts, prompts, rendering with
the NaN guard, PNGs, masks, manifest, COCO, YOLO; verification off: no CLIP weights here);
baseline = the stock pipeline call per batch on the same components (``benchmarks.backends``),
``output_type="np"``. Interleaved repeats after a warm-up; ratio of median images/s.

Model FLOP utilisation (MFU) = FLOPs per image (every matmul, convolution and attention of one
baseline batch, counted by ``torch.utils.flop_counter``, divided by its size) x images/s, over the
card's dense fp16 tensor peak.

    python -m benchmarks.device.sd15_gpu --backend controlnet-seg --batches 1 8 32 [--compile]

Appends to reports/bench/sd15_gpu.csv and prints a Markdown table.
"""

from __future__ import annotations

import argparse
import csv
import shutil
import tempfile
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

from augment.config.base import backend_settings
from augment.config.image import ImageJob, ImageSamplerSpec, ShapesLayoutSpec, VerifySpec
from augment.core.shards import generate_dataset
from augment.testing.tiny_sd import save_sd_folder
from benchmarks.backends import PALETTE, bare_loop
from benchmarks.common import device_name, interleaved, median

OUT = Path("reports/bench/sd15_gpu.csv")
PEAK_FP16_TFLOPS = {"H100 PCIe": 756.0, "H100": 989.0, "H200": 989.0, "A100": 312.0,
                    "L40S": 362.0, "L4": 121.0, "A10G": 70.0, "A10": 125.0}
"""Dense fp16 tensor-core peaks (vendor datasheets, no sparsity); first matching name wins."""


def peak_flops(name: str, override: float | None) -> float:
    if override:
        return override * 1e12
    for key, tflops in PEAK_FP16_TFLOPS.items():
        if key in name:
            return tflops * 1e12
    raise SystemExit(f"no fp16 peak known for {name!r}; pass --peak-tflops")


def make_job(backend: str, folder: Path, controlnet: Path | None, batch: int, batches: int,
             compile_unet: bool) -> ImageJob:
    extra = {"controlnet": str(controlnet), "palette": PALETTE} if controlnet else {}
    return ImageJob(
        name=f"{backend}-b{batch}", num_samples=batch * batches, shard_size=batch * batches,
        model=backend_settings(backend, path=str(folder), device="cuda", dtype="float16",
                        compile_unet=compile_unet, **extra),
        sampler=ImageSamplerSpec(scheduler="unipc", steps=20, guidance=7.5, batch_size=batch),
        layout=ShapesLayoutSpec(height=512, width=512, objects_per_image=(1, 4)),
        verify=VerifySpec(method="none"))


def flops_per_image(job: ImageJob, batch: int) -> float:
    with FlopCounterMode(display=False) as counter:
        bare_loop(job, num_samples=batch)
    return counter.get_total_flops() / batch


def measure(job: ImageJob, work: Path, repeats: int) -> tuple[float, float]:
    """(ours, baseline) median images/s."""
    counter = iter(range(1000))

    def ours():
        out = work / f"run{next(counter)}"
        generate_dataset(job, out)
        shutil.rmtree(out)

    t_ours, t_base = interleaved(ours, lambda: bare_loop(job), repeats)
    return job.num_samples / median(t_ours), job.num_samples / median(t_base)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backend", default="controlnet-seg",
                        choices=["controlnet-seg", "gligen", "inpaint-paste"])
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--compile", action="store_true", help="torch.compile the UNet (ours)")
    parser.add_argument("--peak-tflops", type=float, default=None)
    args = parser.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("this benchmark needs a CUDA GPU")
    peak = peak_flops(torch.cuda.get_device_name(0), args.peak_tflops)
    work = Path(tempfile.mkdtemp(prefix="synthmill-sd15-"))
    folder, controlnet = save_sd_folder(work / "models", args.backend, shape="sd15",
                                        dtype=torch.float16)
    rows = []
    for batch in args.batches:
        job = make_job(args.backend, folder, controlnet, batch, 3 if batch < 32 else 2,
                       args.compile)
        generate_dataset(job.model_copy(update={"num_samples": batch}), work / f"warm{batch}")
        bare_loop(job, num_samples=batch)
        ours, base = measure(job, work, args.repeats)
        flops = flops_per_image(job, batch)
        rows.append({"backend": args.backend, "batch": batch, "compile": args.compile,
                     "ours_images_per_s": round(ours, 3), "bare_images_per_s": round(base, 3),
                     "ratio": round(ours / base, 4), "gflops_per_image": round(flops / 1e9, 1),
                     "mfu_ours": round(flops * ours / peak, 4),
                     "mfu_bare": round(flops * base / peak, 4),
                     "peak_memory_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2),
                     "device": device_name()})
        print(rows[-1], flush=True)
    shutil.rmtree(work, ignore_errors=True)
    OUT.parent.mkdir(parents=True, exist_ok=True)
    new = not OUT.exists()
    with open(OUT, "a", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        if new:
            writer.writeheader()
        writer.writerows(rows)
    print("| " + " | ".join(rows[0]) + " |\n|" + "---|" * len(rows[0]))
    for r in rows:
        print("| " + " | ".join(str(v) for v in r.values()) + " |")


if __name__ == "__main__":
    main()
