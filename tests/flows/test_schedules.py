"""Schedules on a real Prefect server: ``prefect server start`` on a loopback port, ``synthmill
serve`` of a config with an interval schedule, and at least two scheduled runs that each write a
new, valid dataset version with ``latest`` on the newer one. Everything is stopped by PID."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pandas as pd
import pytest
import yaml

from augment.core.versions import LATEST, is_finished, latest, versions

BIN = Path(sys.executable).parent
DEADLINE_S = 240


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env(home: Path, url: str | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env.update({"PREFECT_HOME": str(home), "PREFECT_UI_ENABLED": "false",
                "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "DO_NOT_TRACK": "1",
                "PREFECT_LOGGING_LEVEL": "WARNING", "HF_HUB_OFFLINE": "1",
                # the scheduler looks for runs to create every 2 s instead of every 60 s, and the
                # served process polls for due runs every 2 s instead of 10 s
                "PREFECT_SERVER_SERVICES_SCHEDULER_LOOP_SECONDS": "2",
                "PREFECT_RUNNER_POLL_FREQUENCY": "2"})
    if url:
        env["PREFECT_API_URL"] = url
    return env


def _stop(proc: subprocess.Popen) -> None:
    """End ``proc``'s whole process group (uvicorn, flow-run subprocesses) by PID."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


@pytest.fixture
def prefect_server(tmp_path):
    port = _free_port()
    url = f"http://127.0.0.1:{port}/api"
    log = open(tmp_path / "server.log", "w")
    server = subprocess.Popen([str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1",
                               "--port", str(port)], env=_env(tmp_path / "home"), stdout=log,
                              stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if server.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("prefect server did not start:\n"
                                   + (tmp_path / "server.log").read_text()[-3000:])
            time.sleep(0.5)
        yield url
    finally:
        _stop(server)
        log.close()


def test_served_interval_schedule_writes_new_versions_and_moves_latest(prefect_server, tmp_path):
    out = tmp_path / "datasets"
    config = tmp_path / "nightly.yaml"
    config.write_text(yaml.safe_dump({
        "out": str(out),
        "jobs": [{"name": "refresh", "num_samples": 4, "shard_size": 2, "seed": 5,
                  "model": {"backend": "shapes-world"}, "verify": {"enabled": False}}],
        "schedule": {"interval": 8},
    }))
    log = open(tmp_path / "serve.log", "w")
    serve = subprocess.Popen([str(BIN / "synthmill"), "serve", str(config)],
                             env=_env(tmp_path / "home", prefect_server), stdout=log,
                             stderr=subprocess.STDOUT, start_new_session=True, cwd=tmp_path)
    series = out / "refresh"
    try:
        deadline = time.monotonic() + DEADLINE_S
        while len([v for v in versions(series) if is_finished(series / v)]) < 2:
            assert serve.poll() is None, (tmp_path / "serve.log").read_text()[-3000:]
            assert time.monotonic() < deadline, (
                f"fewer than 2 scheduled runs finished in {DEADLINE_S} s:\n"
                + (tmp_path / "serve.log").read_text()[-3000:])
            time.sleep(1)
        # the second run may still be moving latest and reporting its final state
        deadline = time.monotonic() + 30
        while True:
            finished = [v for v in versions(series) if is_finished(series / v)]
            runs = httpx.post(f"{prefect_server}/flow_runs/filter", json={
                "flow_runs": {"state": {"type": {"any_": ["COMPLETED"]}}}}).json()
            scheduled = [r for r in runs if r.get("deployment_id")]
            if (len(scheduled) >= 2 and latest(series) in finished[1:]) or (
                    time.monotonic() > deadline):
                break
            time.sleep(0.5)
    finally:
        _stop(serve)
        log.close()

    assert finished[:2] == ["v0001", "v0002"]
    assert (series / LATEST).is_symlink() and latest(series) == finished[-1]
    seeds = []
    for version in finished[:2]:
        root = series / version
        info = json.loads((root / "dataset.json").read_text())
        manifest = pd.read_parquet(root / "manifest.parquet")
        assert info["name"] == "refresh" and info["counts"]["samples"] == 4
        assert sorted(manifest["id"]) == [0, 1, 2, 3]
        assert all((root / p).is_file() for p in manifest["image"])
        assert json.loads((root / "annotations" / "instances.json").read_text())["images"]
        seeds.append(info["config"]["seed"])
    assert seeds == [5, 6]  # each version is new data (seed + version - 1)
    assert len(scheduled) >= 2  # they were scheduled runs of the served deployment
    assert {r["deployment_id"] for r in scheduled} == {scheduled[0]["deployment_id"]}


@pytest.mark.parametrize("case", ["no schedule", "no server", "server down"])
def test_serve_says_in_one_line_what_is_missing(tmp_path, case):
    config = tmp_path / "c.yaml"
    body = {"jobs": [{"name": "a", "model": {"backend": "shapes-world"}}]}
    if case != "no schedule":
        body["schedule"] = {"cron": "0 3 * * *"}
    config.write_text(yaml.safe_dump(body))
    url = f"http://127.0.0.1:{_free_port()}/api" if case == "server down" else None
    done = subprocess.run([str(BIN / "synthmill"), "serve", str(config)], capture_output=True,
                          text=True, env=_env(tmp_path / "home", url), timeout=120)
    assert done.returncode == 2 and done.stdout == ""
    (line,) = done.stderr.strip().splitlines()
    expected = {"no schedule": "schedule: this config has no schedule: section",
                "no server": "schedules need a Prefect server (PREFECT_API_URL is not set)",
                "server down": f"no Prefect server answers at PREFECT_API_URL={url}"}[case]
    assert expected in line
    if case != "no schedule":
        assert "prefect server start --host 127.0.0.1" in line
