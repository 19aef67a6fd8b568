"""Audio generation flow vs a bare loop over the same model, and the embedded model's clips/s.

The flow does everything a sound-event dataset needs (soundscape sampling, every event clip with
the NaN guard, classifier verification, mixing, WAV, frame maps, manifest, DCASE TSV, JAMS) under
Prefect; the baseline only samples the same soundscapes and calls the tones-tiny pipeline and the
Griffin-Lim vocoder on their events, in the same batches. The Prefect server is started before
timing; its start-up is reported apart. A second row: the flow's seconds in model calls (clips
and their verification) vs its wall seconds; 1 - ratio is the share of wall time outside them.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import torch

from augment.audio.backends.tones_tiny import log_mels_to_clips
from augment.audio.generation import event_seeds
from augment.audio.pipelines.tones_tiny import encode_events
from augment.audio.soundscape import sample_soundscape
from augment.config.audio import AudioJob
from augment.core.backends import load_backend
from augment.core.seeds import sample_seeds
from benchmarks.common import interleaved, median, row, timed
from benchmarks.generation import model_share_row
from flows.config import RunConfig

NUM_SCAPES = 32
JOB = AudioJob.model_validate({"name": "bench-audio", "num_samples": NUM_SCAPES, "shard_size": 16,
                               "sampler": {"steps": 15, "batch_size": 16},
                               "soundscape": {"duration": 4.0}})


def bare_loop(job: AudioJob) -> int:
    """What a user would write with diffusers alone: events -> condition -> pipeline -> vocoder.
    Returns the number of clips made."""
    backend = load_backend(job.model)
    sampler, clips = job.sampler, 0
    for start in range(0, job.num_samples, sampler.batch_size):
        ids = range(start, min(start + sampler.batch_size, job.num_samples))
        scapes = [sample_soundscape(job.soundscape, job.seed, i) for i in ids]
        events = [e for s in scapes for e in s.events]
        seeds = [x for s, i in zip(scapes, ids)
                 for x in event_seeds(sample_seeds(job.seed, i)[1], len(s.events))]
        for b in range(0, len(events), sampler.batch_size):
            part, part_seeds = events[b:b + sampler.batch_size], seeds[b:b + sampler.batch_size]
            generators = [torch.Generator().manual_seed(s) for s in part_seeds]
            log_mels = backend.pipe(encode_events(part), num_inference_steps=sampler.steps,
                                    guidance_scale=sampler.guidance,
                                    generator=generators).log_mels
            log_mels_to_clips(log_mels, part, part_seeds)
            clips += len(part)
    return clips


def run(repeats: int = 3) -> tuple[list[dict], list[str]]:
    from flows.generate import run_generate

    work = Path(tempfile.mkdtemp(prefix="synthmill-bench-audio-"))
    startup, _ = timed(run_generate, RunConfig(out=str(work / "warmup"),
                                               jobs=[JOB.model_copy(update={"num_samples": 2})]))
    counter = iter(range(10_000))
    clips, model_seconds = [], []

    def ours():
        out = work / f"run{next(counter)}"
        [summary] = run_generate(RunConfig(out=str(out), jobs=[JOB]))
        model_seconds.append(summary["model_seconds"])
        shutil.rmtree(out)

    t_ours, t_base = interleaved(ours, lambda: clips.append(bare_loop(JOB)), repeats)
    shutil.rmtree(work, ignore_errors=True)
    rate_ours, rate_base = NUM_SCAPES / median(t_ours), NUM_SCAPES / median(t_base)
    clip_rate = clips[0] / median(t_base)
    share_row, outside = model_share_row("audio_generation_flow_model_seconds_vs_wall",
                                         model_seconds, t_ours, repeats)
    notes = [f"- audio generation: {NUM_SCAPES} soundscapes of 4 s ({clips[0]} event clips), "
             f"tones-tiny, {JOB.sampler.scheduler} {JOB.sampler.steps} steps, guidance "
             f"{JOB.sampler.guidance}, batch {JOB.sampler.batch_size}; flow seconds "
             f"{[round(t, 2) for t in t_ours]}, bare loop seconds {[round(t, 2) for t in t_base]}; "
             f"the flow also verifies, mixes and writes every file; first flow run incl. Prefect "
             f"server start-up {startup:.1f} s (not in the ratio). The embedded model (denoising + "
             f"Griffin-Lim) makes {clip_rate:.2f} clips/s on this CPU. Share of the flow's wall "
             f"time outside model calls: {outside:.3f}."]
    return [row("audio_generation_flow_vs_bare_loop", rate_ours, rate_base, "soundscapes/s",
                repeats), share_row], notes
