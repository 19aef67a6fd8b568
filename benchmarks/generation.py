"""Generation flow vs a bare sampling loop over the same pipeline, batch size and steps.

The flow does everything a dataset needs (layouts, sampling, verification, PNGs, masks, manifest,
COCO, YOLO) under Prefect; the baseline only samples layouts and calls the pipeline. The Prefect
server is started before timing (a deployment keeps one running); its start-up is reported apart.
A second row says where the flow's time goes: the seconds its shards spent in model calls
(rendering and verification) against its wall time, so 1 - ratio is the share of wall time
outside model calls (orchestration, files, exporters). A third row times the same dataset work
through the library without Prefect (``generate_dataset``) against the bare loop, in the same run:
the difference between the two ratios is what orchestration costs.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import torch

from augment.core.backends import load_backend
from augment.config.image import ImageJob, ImageSamplerSpec, ShapesLayoutSpec
from flows.config import RunConfig
from augment.core.seeds import sample_seeds
from augment.core.shards import generate_dataset
from augment.image.layouts import sample_layout
from augment.image.pipelines.shapes_tiny import encode_layouts
from benchmarks.common import interleaved, median, row, timed

NUM_IMAGES = 96
SAMPLER = ImageSamplerSpec(scheduler="dpmsolver++", steps=10, guidance=2.0, batch_size=16)


def bare_loop(job: ImageJob) -> None:
    """What a user would write with diffusers alone: layouts -> condition -> pipeline call."""
    pipe = load_backend(job.model).pipe
    for start in range(0, job.num_samples, SAMPLER.batch_size):
        ids = range(start, min(start + SAMPLER.batch_size, job.num_samples))
        layouts = [sample_layout(job.layout, job.seed, i) for i in ids]
        generators = [torch.Generator().manual_seed(sample_seeds(job.seed, i)[1]) for i in ids]
        pipe(encode_layouts(layouts), num_inference_steps=SAMPLER.steps,
             guidance_scale=SAMPLER.guidance, generator=generators)


def model_share_row(benchmark: str, model_seconds: list[float], wall: list[float],
                    repeats: int) -> tuple[dict, float]:
    """The row of the flow's model-call seconds vs its wall seconds (medians over the repeats),
    and the share of wall time outside model calls."""
    inside, total = median(model_seconds), median(wall)
    return row(benchmark, inside, total, "s in model calls / s wall", repeats), 1 - inside / total


def run(repeats: int = 5) -> tuple[list[dict], list[str]]:
    from flows.generate import run_generate

    work = Path(tempfile.mkdtemp(prefix="synthmill-bench-"))
    job = ImageJob(name="bench", num_samples=NUM_IMAGES, shard_size=32, sampler=SAMPLER,
                   layout=ShapesLayoutSpec())
    load_backend(job.model).pipe.set_progress_bar_config(disable=True)
    startup, _ = timed(run_generate, RunConfig(out=str(work / "warmup"),
                                               jobs=[job.model_copy(update={"num_samples": 2})]))
    counter = iter(range(10_000))
    model_seconds = []

    def ours():
        out = work / f"run{next(counter)}"
        [summary] = run_generate(RunConfig(out=str(out), jobs=[job]))
        model_seconds.append(summary["model_seconds"])
        shutil.rmtree(out)

    def library():  # the same dataset work without Prefect: what the flow's orchestration adds
        out = work / f"lib{next(counter)}"
        generate_dataset(job, out)
        shutil.rmtree(out)

    t_ours, t_base = interleaved(ours, lambda: bare_loop(job), repeats)
    t_lib, t_base2 = interleaved(library, lambda: bare_loop(job), repeats)
    shutil.rmtree(work, ignore_errors=True)
    ips_ours, ips_base = NUM_IMAGES / median(t_ours), NUM_IMAGES / median(t_base)
    best = (NUM_IMAGES / min(t_ours)) / (NUM_IMAGES / min(t_base))
    share_row, outside = model_share_row("generation_flow_model_seconds_vs_wall", model_seconds,
                                         t_ours, repeats)
    notes = [f"- generation: best-of-{repeats} ratio {best:.3f}; {NUM_IMAGES} images, shapes-tiny, {SAMPLER.scheduler} "
             f"{SAMPLER.steps} steps, guidance {SAMPLER.guidance}, batch {SAMPLER.batch_size}; "
             f"flow seconds {[round(t, 2) for t in t_ours]}, bare loop seconds "
             f"{[round(t, 2) for t in t_base]}; first flow run incl. Prefect server start-up "
             f"{startup:.1f} s (not in the ratio). Share of the flow's wall time outside model "
             f"calls: {outside:.3f} (model-call seconds {[round(t, 2) for t in model_seconds]}). "
             f"The same dataset work without Prefect (`generate_dataset`): seconds "
             f"{[round(t, 2) for t in t_lib]} vs bare {[round(t, 2) for t in t_base2]}, ratio "
             f"{median(t_base2) / median(t_lib):.3f}: the flow's gap to the bare loop beyond "
             f"this one is orchestration, the rest is the dataset's own work and run-to-run "
             f"noise."]
    return [row("generation_flow_vs_bare_loop", ips_ours, ips_base, "images/s", repeats),
            row("generation_library_vs_bare_loop", NUM_IMAGES / median(t_lib),
                NUM_IMAGES / median(t_base2), "images/s", repeats),
            share_row], notes
