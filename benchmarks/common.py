"""Shared benchmark plumbing: timing, the results table and its Markdown summary.

Every figure is a ratio of two things measured side by side in the same run (interleaved,
several repeats), so a noisy machine cannot fake it. ratio = ours / baseline, higher is better
(for times, pass the inverse quantity, e.g. images/s or 1/seconds).
"""

from __future__ import annotations

import csv
import statistics
import time
from pathlib import Path

import torch

RESULTS = Path("reports/bench/results.csv")
SUMMARY = Path("reports/bench/summary.md")
COLUMNS = ["benchmark", "ours", "baseline", "unit", "ratio", "n_repeats", "device"]


def device_name() -> str:
    if torch.cuda.is_available():
        return torch.cuda.get_device_name(0)
    import os

    return f"cpu x{os.cpu_count()} (torch threads {torch.get_num_threads()})"


def timed(fn, *args, **kwargs) -> tuple[float, object]:
    start = time.perf_counter()
    result = fn(*args, **kwargs)
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return time.perf_counter() - start, result


def interleaved(ours, baseline, repeats: int) -> tuple[list[float], list[float]]:
    """Run ``ours`` and ``baseline`` alternately (order flipped each repeat); their seconds."""
    t_ours, t_base = [], []
    for r in range(repeats):
        pair = [(ours, t_ours), (baseline, t_base)]
        for fn, sink in (pair if r % 2 == 0 else pair[::-1]):
            sink.append(timed(fn)[0])
    return t_ours, t_base


def row(benchmark: str, ours: float, baseline: float, unit: str, repeats: int,
        higher_is_better: bool = True) -> dict:
    ratio = ours / baseline if higher_is_better else baseline / ours
    return {"benchmark": benchmark, "ours": round(ours, 4), "baseline": round(baseline, 4),
            "unit": unit, "ratio": round(ratio, 4), "n_repeats": repeats, "device": device_name()}


def median(values: list[float]) -> float:
    return statistics.median(values)


def append_results(rows: list[dict]) -> None:
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    new = not RESULTS.exists()
    with open(RESULTS, "a", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=COLUMNS)
        if new:
            writer.writeheader()
        writer.writerows(rows)


def write_summary(rows: list[dict], notes: list[str]) -> None:
    lines = ["# Benchmarks (latest `make bench`)", "",
             "ratio = ours / baseline, higher is better; medians over interleaved repeats.", "",
             "| benchmark | ours | baseline | unit | ratio | repeats | device |",
             "|---|---|---|---|---|---|---|"]
    lines += [f"| {r['benchmark']} | {r['ours']} | {r['baseline']} | {r['unit']} | "
              f"{r['ratio']} | {r['n_repeats']} | {r['device']} |" for r in rows]
    lines += ["", *notes, ""]
    SUMMARY.parent.mkdir(parents=True, exist_ok=True)
    SUMMARY.write_text("\n".join(lines))
