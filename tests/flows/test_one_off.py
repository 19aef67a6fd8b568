"""One-off commands (issue 14): with no Prefect server configured, ``synthmill evaluate`` and
``compare`` make their library calls in-process and start no temporary server; with a server
configured they run as flows that the server records."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
from typer.testing import CliRunner

from augment.testing.scenes import scenes_dataset

SYNTHMILL = str(Path(sys.executable).parent / "synthmill")


def test_without_a_server_compare_starts_no_prefect_server(tmp_path):
    a, b = scenes_dataset(tmp_path, "a", 6, 1), scenes_dataset(tmp_path, "b", 6, 2)
    home = tmp_path / "prefect-home"
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"} | {
        "PREFECT_HOME": str(home)}
    done = subprocess.run([SYNTHMILL, "compare", str(a), str(b), "--out", "report",
                           "--set", "metrics=[diversity]", "--set", f"cache_dir={tmp_path}/cache"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    metrics = pd.read_csv(tmp_path / "report" / "metrics.csv")
    assert set(metrics["dataset"]) == {"a", "b"}
    assert (tmp_path / "report" / "report.html").exists()
    # a temporary server would have created its database under PREFECT_HOME
    assert not home.exists() or not list(home.rglob("*.db")), list(home.rglob("*"))
    assert "prefect" not in done.stderr.lower()


def test_with_a_server_evaluate_runs_as_a_recorded_flow(tmp_path, monkeypatch, prefect_harness):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowFilter, FlowFilterName

    from flows.cli import app

    scenes_dataset(tmp_path / "datasets", "scenes", 6, 3)
    monkeypatch.chdir(tmp_path)

    async def runs() -> int:
        async with get_client() as client:
            return len(await client.read_flow_runs(
                flow_filter=FlowFilter(name=FlowFilterName(any_=["evaluate-dataset"]))))

    before = asyncio.run(runs())
    result = CliRunner().invoke(app, ["evaluate", "datasets/scenes", "--out", "report",
                                      "--set", "metrics=[diversity]"])
    assert result.exit_code == 0, result.output
    assert asyncio.run(runs()) == before + 1
    assert set(pd.read_csv(tmp_path / "report" / "metrics.csv")["dataset"]) == {"scenes"}
