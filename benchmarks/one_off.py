"""One-off commands vs the library calls they make (issue 14: <= 1.5x).

``synthmill evaluate``, ``compare`` and ``report`` on demo-sized data, each in a new process,
against a new process that makes the same library call (``evaluation.suite.evaluate_and_report``
or ``report``) with the same arguments: both pay Python, torch and the models' start-up; the
difference is what the command line adds. With no ``PREFECT_API_URL`` the commands call the
library directly; before, each started Prefect's temporary server (10-20 s on 2 cores).

Data: 64 procedural shapes-world scenes as the dataset (a second set of 64 for ``compare``) and 256
as the reference, like the demo (64 generated samples, 256 real scenes). Each evaluation starts
from an empty feature cache (its own ``cache_dir``), so both sides compute every feature.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from augment.testing.scenes import scenes_dataset
from benchmarks.common import interleaved, median, row

SYNTHMILL = str(Path(sys.executable).parent / "synthmill")
_LIBRARY = {
    "evaluate": "import sys; from evaluation.config import EvalSpec, ReportSpec; "
                "from evaluation.suite import evaluate_and_report; "
                "evaluate_and_report(sys.argv[3:], EvalSpec(cache_dir=sys.argv[2]), sys.argv[1], "
                "sys.argv[2] + '-out', ReportSpec(), {})",
    "report": "import sys; from evaluation.config import ReportSpec; "
              "from evaluation.suite import report; "
              "report([sys.argv[1] + '/metrics.csv'], [], sys.argv[2], ReportSpec())",
}


def _sets(work: Path) -> tuple[Path, Path, Path]:
    return (scenes_dataset(work, "gen", 64, 21), scenes_dataset(work, "gen2", 64, 22),
            scenes_dataset(work, "ref", 256, 23))


def _env() -> dict:
    return {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}


def run(repeats: int = 3) -> tuple[list[dict], list[str]]:
    work = Path(tempfile.mkdtemp(prefix="synthmill-bench-oneoff-"))
    counter = iter(range(10_000))
    try:
        gen, gen2, ref = _sets(work)

        def sh(argv: list[str]) -> None:
            subprocess.run(argv, env=_env(), cwd=work, check=True, capture_output=True, timeout=600)

        def cli(datasets: list[Path]):
            def go():
                tag = work / f"c{next(counter)}"
                command = "evaluate" if len(datasets) == 1 else "compare"
                sh([SYNTHMILL, command, *map(str, datasets), "-r", str(ref), "--out", f"{tag}-out",
                    "--set", f"cache_dir={tag}"])
            return go

        def library(datasets: list[Path]):
            def go():
                tag = work / f"l{next(counter)}"
                sh([sys.executable, "-c", _LIBRARY["evaluate"], str(ref), str(tag),
                    *map(str, datasets)])
            return go

        cli([gen])()  # warm-up: the OS file cache holds torch and the models for both sides
        evaluated = work / "c0-out"
        t_eval, t_eval_lib = interleaved(cli([gen]), library([gen]), repeats)
        t_cmp, t_cmp_lib = interleaved(cli([gen, gen2]), library([gen, gen2]), repeats)
        t_rep, t_rep_lib = interleaved(
            lambda: sh([SYNTHMILL, "report", str(evaluated), "--out", str(work / f"r{next(counter)}")]),
            lambda: sh([sys.executable, "-c", _LIBRARY["report"], str(evaluated),
                        str(work / f"r{next(counter)}")]), repeats)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    rows = [row("cli_evaluate_vs_library", median(t_eval), median(t_eval_lib), "seconds", repeats,
                higher_is_better=False),
            row("cli_compare_vs_library", median(t_cmp), median(t_cmp_lib), "seconds", repeats,
                higher_is_better=False),
            row("cli_report_vs_library", median(t_rep), median(t_rep_lib), "seconds", repeats,
                higher_is_better=False)]
    notes = [f"- one-off commands, each in a new process, no PREFECT_API_URL (target <= 1.5x the "
             f"library call): `synthmill evaluate` (64 vs 256 scenes, empty feature cache) "
             f"{median(t_eval):.1f} s vs {median(t_eval_lib):.1f} s for `evaluate_and_report` "
             f"({median(t_eval) / median(t_eval_lib):.2f}x); `synthmill compare` of 2 sets "
             f"{median(t_cmp):.1f} s vs {median(t_cmp_lib):.1f} s "
             f"({median(t_cmp) / median(t_cmp_lib):.2f}x); `synthmill report` {median(t_rep):.1f} s "
             f"vs {median(t_rep_lib):.1f} s ({median(t_rep) / median(t_rep_lib):.2f}x)"]
    return rows, notes
