"""Scale-out and orchestration costs of the generation flow.

- The same shapes-tiny job on a local Dask cluster of 2 worker processes vs 1 (speedup). Each
  worker runs torch on one thread; on a 2-core machine two workers can at best use both cores,
  which the thread runner's single shard already does with torch's two intra-op threads, so
  expect well under 2x here; the gain is on machines with more cores or one GPU per worker.
- Orchestration overhead per shard: the flow (thread runner, one shard in flight) vs calling
  ``prepare_dataset`` / ``generate_shard`` / ``finalize_dataset`` directly, on many one-sample
  shards of procedural scenes; reported in ms per shard.
- Server start-up a one-off CLI command pays: ``synthmill generate`` of a one-sample procedural
  job in a fresh process (Prefect starts its temporary server, with a fresh or an existing
  ``PREFECT_HOME`` database) vs the same job through the library without Prefect, also in a fresh
  process (both pay Python, torch and diffusers imports).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

from augment.config.image import ImageJob
from augment.core.shards import finalize_dataset, generate_shard, pending_shards, prepare_dataset
from benchmarks.common import interleaved, median, row, timed
from flows.config import RunConfig, RunnerSpec

MODEL_JOB = ImageJob.model_validate({"name": "scale", "num_samples": 16, "shard_size": 2,
                                     "sampler": {"steps": 10, "batch_size": 2},
                                     "verify": {"enabled": False}})
TINY_SHARDS = ImageJob.model_validate({"name": "tiny", "num_samples": 40, "shard_size": 1,
                                       "model": {"backend": "shapes-world"},
                                       "verify": {"enabled": False}})
ONE = ImageJob.model_validate({"name": "one", "num_samples": 1, "model": {"backend": "shapes-world"},
                               "verify": {"enabled": False}})

def _direct(job: ImageJob, out: Path) -> None:
    root = prepare_dataset(job, out)
    for shard in pending_shards(job, root):
        generate_shard(job, root, shard)
    finalize_dataset(job, root)


_LIBRARY_ONLY = ("import sys, yaml; from augment.config.image import ImageJob; "
                 "from augment.core.shards import generate_dataset; "
                 "generate_dataset(ImageJob.model_validate(yaml.safe_load(open(sys.argv[1]))"
                 "['jobs'][0]), sys.argv[2])")


def _one_off(work: Path, fresh_home: bool) -> tuple[list[str], dict]:
    """The command line of a one-off ``synthmill generate`` (or of the library call when
    ``fresh_home`` is None) and its environment."""
    config = work / "one.yaml"
    config.write_text(yaml.safe_dump({"jobs": [ONE.model_dump(mode="json")]}))
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    env["PREFECT_HOME"] = str(Path(tempfile.mkdtemp(dir=work)) if fresh_home
                              else work / "prefect-home")
    return [str(Path(sys.executable).parent / "synthmill"), "generate", str(config)], env


def _startup_seconds(work: Path, repeats: int) -> tuple[list[float], list[float], list[float]]:
    """Wall seconds of the one-off CLI with a fresh and an existing PREFECT_HOME, and of the
    library call, each in a new process (interleaved)."""
    counter = iter(range(10_000))

    def cli(fresh: bool):
        def go():
            argv, env = _one_off(work, fresh)
            subprocess.run([*argv, "--out", str(work / f"cli{next(counter)}")], env=env,
                           check=True, capture_output=True, timeout=300)
        return go

    def library():
        _, env = _one_off(work, False)
        subprocess.run([sys.executable, "-c", _LIBRARY_ONLY, str(work / "one.yaml"),
                        str(work / f"lib{next(counter)}")], env=env, check=True,
                       capture_output=True, timeout=300)

    cli(False)()  # creates the existing database
    t_fresh, t_lib = interleaved(cli(True), library, repeats)
    t_warm, t_lib2 = interleaved(cli(False), library, repeats)
    return t_fresh, t_warm, t_lib + t_lib2


def run(repeats: int = 2) -> tuple[list[dict], list[str]]:
    from flows.generate import run_generate

    work = Path(tempfile.mkdtemp(prefix="synthmill-bench-scale-"))
    counter = iter(range(10_000))

    def flow(job, runner):
        def go():
            out = work / f"run{next(counter)}"
            run_generate(RunConfig(out=str(out), jobs=[job], runner=runner))
            shutil.rmtree(out)
        return go

    def direct(job):
        def go():
            out = work / f"run{next(counter)}"
            _direct(job, out)
            shutil.rmtree(out)
        return go

    flow(ONE, RunnerSpec())()  # the temporary server starts here, outside the timings
    t_two, t_one = interleaved(flow(MODEL_JOB, RunnerSpec(kind="dask", max_workers=2)),
                               flow(MODEL_JOB, RunnerSpec(kind="dask", max_workers=1)), repeats)
    t_flow, t_direct = interleaved(flow(TINY_SHARDS, RunnerSpec()), direct(TINY_SHARDS), repeats)
    t_fresh, t_warm, t_lib = _startup_seconds(work, repeats)
    shutil.rmtree(work, ignore_errors=True)
    shards = TINY_SHARDS.num_samples
    per_shard = (median(t_flow) - median(t_direct)) / shards * 1000
    n = MODEL_JOB.num_samples
    rows = [row("dask_2_workers_vs_1", n / median(t_two), n / median(t_one), "samples/s", repeats),
            row("flow_overhead_per_shard_ms", median(t_flow) / shards * 1000,
                median(t_direct) / shards * 1000, "ms per shard", repeats, higher_is_better=False),
            row("cli_one_off_fresh_prefect_home_vs_library", median(t_fresh), median(t_lib),
                "seconds", repeats, higher_is_better=False),
            row("cli_one_off_existing_prefect_home_vs_library", median(t_warm), median(t_lib),
                "seconds", repeats, higher_is_better=False)]
    notes = [f"- scale-out: {n} shapes-tiny samples in shards of {MODEL_JOB.shard_size} on a local "
             f"Dask cluster: 2 workers {[round(t, 1) for t in t_two]} s, 1 worker "
             f"{[round(t, 1) for t in t_one]} s (speedup {median(t_one) / median(t_two):.2f}x on "
             f"{os.cpu_count()} cores; each worker runs torch on one thread)",
             f"- orchestration: {per_shard:.0f} ms per shard for the Prefect task over a direct "
             f"call ({shards} one-sample shards: flow {median(t_flow):.2f} s, direct "
             f"{median(t_direct):.2f} s)",
             f"- one-off CLI (`synthmill generate`, 1 procedural sample, new process): "
             f"{median(t_fresh):.1f} s with a fresh PREFECT_HOME, {median(t_warm):.1f} s with an "
             f"existing one, vs {median(t_lib):.1f} s for the library call without Prefect: the "
             f"temporary server and flow run cost {median(t_fresh) - median(t_lib):.1f} s / "
             f"{median(t_warm) - median(t_lib):.1f} s per command"]
    return rows, notes
