"""Stable Diffusion backends: our generation vs the bare diffusers pipeline on the same components.

Tiny random-weight components (``augment.testing.tiny_sd``) on this machine's device, 64x64,
4 steps, batch 4. Ours = ``generate_dataset``: layouts, prompts, rendering with the NaN guard,
CLIP crop verification, PNGs, masks, manifest, COCO and YOLO. Baseline = what a user would write
with diffusers alone for the same images: the conditions of the same layouts and one stock
pipeline call per batch (inpaint-paste: the background and one call per instance stage), output
``np``. GLIGEN's stock pipeline grounds a whole batch on one box set, so its baseline uses the
first sample's boxes for the batch: the same compute. Interleaved repeats; the ratio is of
median images/s.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch

from augment.core.backends import load_backend
from augment.image.backends.controlnet_seg import control_images
from augment.image.backends.gligen import grounding
from augment.config.base import backend_settings
from augment.config.image import ImageJob, ImageSamplerSpec, ShapesLayoutSpec, VerifySpec
from augment.core.shards import generate_dataset
from augment.core.seeds import sample_seeds
from augment.image.layouts import sample_layout
from augment.testing.tiny_sd import save_sd_folder, save_tiny_open_clip
from augment.core.schedulers import make_scheduler
from benchmarks.common import interleaved, median, row

BACKENDS = ("controlnet-seg", "gligen", "inpaint-paste")
NUM_IMAGES = 8
SAMPLER = ImageSamplerSpec(scheduler="dpmsolver++", steps=4, guidance=3.0, batch_size=4)
LAYOUT = ShapesLayoutSpec(height=64, width=64, objects_per_image=(1, 3))
PALETTE = {"circle": "ball", "square": "box", "triangle": "tent", "star": "flag",
           "cross": "signboard"}


def make_job(backend: str, folders: dict, clip: tuple[Path, Path]) -> ImageJob:
    folder, controlnet = folders[backend]
    extra = {"controlnet": str(controlnet), "palette": PALETTE} if controlnet else {}
    device = "cuda" if torch.cuda.is_available() else "cpu"
    return ImageJob(name=backend, num_samples=NUM_IMAGES, shard_size=NUM_IMAGES, seed=0,
                    model=backend_settings(backend, path=str(folder), device=device, **extra),
                    sampler=SAMPLER, layout=LAYOUT,
                    verify=VerifySpec(method="clip", clip_model=str(clip[0]),
                                      clip_checkpoint=str(clip[1]), min_score=0.0))


def _gens(seeds: list[int]) -> list[torch.Generator]:
    return [torch.Generator().manual_seed(s) for s in seeds]


def _call_kwargs(sampler: ImageSamplerSpec, layouts, seeds) -> dict:
    return {"height": layouts[0].height, "width": layouts[0].width,
            "num_inference_steps": sampler.steps, "guidance_scale": sampler.guidance,
            "generator": _gens(seeds), "output_type": "np"}


def bare_controlnet(pipe, job: ImageJob, layouts, seeds) -> None:
    pipe([layout.caption for layout in layouts], image=control_images(layouts, job.model),
         **_call_kwargs(job.sampler, layouts, seeds))


def bare_gligen(pipe, job: ImageJob, layouts, seeds) -> None:
    phrases, boxes = grounding(layouts[0])
    pipe([layout.caption for layout in layouts], gligen_phrases=phrases, gligen_boxes=boxes,
         **_call_kwargs(job.sampler, layouts, seeds))


def bare_inpaint_paste(pipe, job: ImageJob, layouts, seeds) -> None:
    def call(stage_layouts, prompts, images, masks, stage_seeds):
        return pipe(prompts, image=torch.from_numpy(images).permute(0, 3, 1, 2),
                    mask_image=torch.from_numpy(masks[:, None].astype(np.float32)),
                    **_call_kwargs(job.sampler, stage_layouts, stage_seeds)).images

    height, width = layouts[0].height, layouts[0].width
    canvas = call(layouts, ["an empty scene"] * len(layouts),
                  np.zeros((len(layouts), height, width, 3), np.float32),
                  np.ones((len(layouts), height, width), bool), seeds)
    for k in range(max(len(layout.instances) for layout in layouts)):
        rows = [b for b, layout in enumerate(layouts) if k < len(layout.instances)]
        masks = np.stack([layouts[b].instances[k].mask(height, width) for b in rows])
        out = call([layouts[b] for b in rows], [layouts[b].instances[k].phrase for b in rows],
                   canvas[rows], masks, [seeds[b] + k + 1 for b in rows])
        canvas[rows] = np.where(masks[..., None], out, canvas[rows])


def stock_pipeline(backend: str, pipe):
    """The diffusers pipeline class a user would call, over our loaded components."""
    if backend != "gligen":
        return pipe
    from diffusers import StableDiffusionGLIGENPipeline

    stock = StableDiffusionGLIGENPipeline(**pipe.components, requires_safety_checker=False)
    stock.set_progress_bar_config(disable=True)
    return stock


BARE = {"controlnet-seg": bare_controlnet, "gligen": bare_gligen,
        "inpaint-paste": bare_inpaint_paste}


def bare_loop(job: ImageJob, num_samples: int | None = None) -> None:
    """The baseline for ``job``: its layouts and noise seeds, stock pipeline calls per batch."""
    backend, batch = job.model.backend, job.sampler.batch_size
    pipe = stock_pipeline(backend, load_backend(job.model).pipe)
    pipe.scheduler = make_scheduler(job.sampler.scheduler, pipe.scheduler)
    for start in range(0, num_samples or job.num_samples, batch):
        ids = range(start, min(start + batch, num_samples or job.num_samples))
        layouts = [sample_layout(job.layout, job.seed, i) for i in ids]
        BARE[backend](pipe, job, layouts, [sample_seeds(job.seed, i)[1] for i in ids])


@contextmanager
def timed_render(backend, sink: list[float]):
    """Add the seconds ``backend.render`` takes (model calls and decoding) to ``sink``."""
    real = backend.render

    def render(*args, **kwargs):
        start = time.perf_counter()
        try:
            return real(*args, **kwargs)
        finally:
            sink.append(time.perf_counter() - start)

    backend.render = render
    try:
        yield
    finally:
        del backend.render  # the class method again


def run(repeats: int = 5) -> tuple[list[dict], list[str]]:
    work = Path(tempfile.mkdtemp(prefix="synthmill-bench-sd-"))
    folders = {backend: save_sd_folder(work / "models", backend) for backend in BACKENDS}
    clip = save_tiny_open_clip(work / "clip")
    counter = iter(range(10_000))
    rows, notes = [], []
    for backend in BACKENDS:
        job = make_job(backend, folders, clip)
        generate_dataset(job.model_copy(update={"num_samples": 2}), work / "warmup")
        bare_loop(job, num_samples=2)

        backend_obj, in_render = load_backend(job.model), []

        def ours():
            out = work / f"run{next(counter)}"
            with timed_render(backend_obj, in_render):
                generate_dataset(job, out)
            shutil.rmtree(out)

        t_ours, t_base = interleaved(ours, lambda: bare_loop(job), repeats)
        outside = 1 - sum(in_render) / sum(t_ours)
        rows.append(row(f"{backend}_generation_vs_bare_pipeline", NUM_IMAGES / median(t_ours),
                        NUM_IMAGES / median(t_base), "images/s", repeats))
        best = min(t_base) / min(t_ours)
        notes.append(f"- {backend}: best-of-{repeats} ratio {best:.3f}; {outside:.1%} of our "
                     f"wall time is outside the model calls (render); {NUM_IMAGES} images, "
                     "tiny random-weight components, 64x64, "
                     f"{SAMPLER.scheduler} {SAMPLER.steps} steps, guidance {SAMPLER.guidance}, "
                     f"batch {SAMPLER.batch_size}, CLIP verification in ours; ours seconds "
                     f"{[round(t, 2) for t in t_ours]}, bare pipeline seconds "
                     f"{[round(t, 2) for t in t_base]}.")
    shutil.rmtree(work, ignore_errors=True)
    if not torch.cuda.is_available():
        notes.append("- SD backends at SD-1.5 size in fp16 need a CUDA GPU: run "
                     "`python -m benchmarks.device.sd15_gpu` there (none in this run).")
    return rows, notes
