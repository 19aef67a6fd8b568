"""Ctrl-C during generation (issue 14): the command stops within seconds, not at the end of the
shard; it prints one line saying how far it got and how to resume, and exits 130; the dataset
holds no partial file and no record of a sample whose files are missing; running the same command
again completes the dataset exactly as an uninterrupted run makes it.

The signal goes to the command's whole process group, as a terminal's Ctrl-C does (Prefect's
temporary server included)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import yaml

from augment.config.image import ImageJob
from augment.core.io import FolderLock
from augment.core.shards import generate_dataset
from augment.testing.compare_datasets import assert_same_dataset

SYNTHMILL = str(Path(sys.executable).parent / "synthmill")
STOP_SECONDS = 4.0  # measured 0.5-1.6 s on 2 busy cores (issue 14 asks ~2 s; was 19-48 s)
JOB = {"name": "tiny", "num_samples": 12, "shard_size": 4, "seed": 5,
       "model": {"backend": "shapes-tiny"},
       "sampler": {"scheduler": "ddim", "steps": 6, "batch_size": 2},
       "layout": {"objects_per_image": [1, 2]}}


def _wait_for(path: Path, process: subprocess.Popen, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, f"{path} did not appear in {timeout} s"
        time.sleep(0.02)


def _interrupt(command: str, cwd: Path, sample: Path) -> str:
    """Start ``synthmill <command> run.yaml``, Ctrl-C it (SIGINT to its process group) once
    ``sample`` exists; checks that it ended with 130 within ``STOP_SECONDS``; its output."""
    process = subprocess.Popen([SYNTHMILL, command, "run.yaml"], cwd=cwd, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, start_new_session=True)
    _wait_for(sample, process)
    sent = time.monotonic()
    os.killpg(process.pid, signal.SIGINT)
    out, err = process.communicate(timeout=60)
    seconds = time.monotonic() - sent
    print(f"{command} stopped {seconds:.2f} s after Ctrl-C")
    assert process.returncode == 130, out + err
    assert seconds < STOP_SECONDS, f"{command} stopped {seconds:.2f} s after Ctrl-C"
    return out + err


def _assert_one_resume_line(output: str, done: int, total: int, name: str) -> None:
    lines = [line for line in output.splitlines() if "interrupted" in line]
    assert lines == [f"interrupted: {done} of {total} samples of {name} are done; run the same "
                     "command again to resume"], output
    for noise in ("Traceback", "Crash detected", "GenerationInterrupted", "KeyboardInterrupt",
                  "distributed.", "Warning", "leaked"):
        assert noise not in output, output


def _assert_nothing_partial(root: Path) -> int:
    """No temporary file; every recorded sample's files exist; returns the samples recorded."""
    assert not [p for p in root.rglob("*") if p.name.endswith(".tmp")]
    recorded = 0
    for part in sorted((root / ".synthmill" / "parts").glob("*.parquet")):
        rows = pd.read_parquet(part)
        for role in ("image", "semantic_mask", "instance_mask"):
            assert all((root / rel).is_file() for rel in rows[role]), (part, role)
        recorded += len(rows)
    return recorded


def _interrupt_job(tmp_path: Path, command: str, job: dict, sample_id: int,
                   runner: dict | None = None) -> tuple[Path, int]:
    """Ctrl-C ``synthmill <command>`` on a run.yaml holding ``job`` (and ``runner``) once sample
    ``sample_id``'s image exists; checks nothing is partial and the one resume line; (root,
    samples recorded)."""
    config = {"out": "datasets", "jobs": [job]} | ({"runner": runner} if runner else {})
    (tmp_path / "run.yaml").write_text(yaml.safe_dump(config))
    root = tmp_path / "datasets" / job["name"]
    output = _interrupt(command, tmp_path, root / "images" / f"{sample_id:06d}.png")
    done = _assert_nothing_partial(root)
    _assert_one_resume_line(output, done, job["num_samples"], job["name"])
    return root, done


def test_ctrl_c_stops_generate_mid_shard_and_a_rerun_completes_it_identically(tmp_path):
    # once shard 1's first batch is on disk, its second batch is sampling when the signal comes
    root, done = _interrupt_job(tmp_path, "generate", JOB, 4)
    assert done < JOB["num_samples"] and done % JOB["shard_size"] == 0
    assert not (root / "manifest.parquet").exists()
    with FolderLock(root):  # released
        pass

    resumed = subprocess.run([SYNTHMILL, "generate", "run.yaml"], cwd=tmp_path,
                             capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    direct, _ = generate_dataset(ImageJob.model_validate(JOB), tmp_path / "direct")
    assert_same_dataset(root, direct, ignore=["seconds", "model"])


def test_ctrl_c_stops_the_pipeline_run_in_its_generation(tmp_path):
    _interrupt_job(tmp_path, "run", {**JOB, "name": "tiny-run", "num_samples": 8}, 0)


def test_ctrl_c_stops_a_run_on_a_local_dask_cluster_with_one_line(tmp_path):
    """Ctrl-C reaches the Dask worker processes too (one process group): each stops its shard in
    flight as this process would, and this process closes the cluster; no worker traceback, no
    cluster log line, no leaked-semaphore warning from a worker killed mid-shard. The shards are
    long enough (8 batches) that both are mid-shard when the signal comes: none may finish.
    Workers that ignored the signal were killed by the nanny only after its 4 s wait for a busy
    worker, so such a stop cannot come within ``STOP_SECONDS``; stopped shards took 2.2-2.4 s."""
    job = {**JOB, "name": "tiny-dask", "num_samples": 32, "shard_size": 16,
           "sampler": {**JOB["sampler"], "steps": 20}}
    root, done = _interrupt_job(tmp_path, "generate", job, 0,
                                runner={"kind": "dask", "max_workers": 2})
    assert done == 0


def test_a_second_ctrl_c_kills_at_once(tmp_path):
    """The first Ctrl-C only asks a running shard to stop; the second ends the process."""
    script = ("import os, signal, time\n"
              "from augment.core.stopping import stoppable, stop_requested\n"
              "from flows.interrupt import _on_sigint\n"
              "signal.signal(signal.SIGINT, _on_sigint)\n"
              "with stoppable():\n"
              "    os.kill(os.getpid(), signal.SIGINT)\n"
              "    time.sleep(0.1)\n"
              "    print('stop requested', stop_requested(), flush=True)\n"
              "    os.kill(os.getpid(), signal.SIGINT)\n"
              "    time.sleep(5)\n"
              "print('still alive', flush=True)\n")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=60)
    assert done.stdout == "stop requested True\n", done.stderr
    assert done.returncode == -signal.SIGINT


def test_flow_runs_on_the_temporary_server_have_no_heartbeat_to_wait_for():
    """The heartbeat thread sleeps in 1 s steps and is joined when a flow run ends: on the
    temporary server (which ends with the process, so heartbeats tell it nothing) it added 0-1 s
    to every flow run, twice to a stopped ``synthmill run``; a lasting server keeps them."""
    from prefect.settings import (PREFECT_API_URL, PREFECT_FLOWS_HEARTBEAT_FREQUENCY,
                                  get_current_settings, temporary_settings)

    from flows.generate import heartbeats_only_for_a_lasting_server

    before = PREFECT_FLOWS_HEARTBEAT_FREQUENCY.value()
    # no server configured (a test session's harness may have set one: unset it here)
    with temporary_settings(restore_defaults={PREFECT_API_URL}):
        with heartbeats_only_for_a_lasting_server():
            assert get_current_settings().flows.heartbeat_frequency is None
        assert PREFECT_FLOWS_HEARTBEAT_FREQUENCY.value() == before
    with temporary_settings(updates={PREFECT_API_URL: "http://127.0.0.1:4200/api"}):
        with heartbeats_only_for_a_lasting_server():
            assert get_current_settings().flows.heartbeat_frequency == before
