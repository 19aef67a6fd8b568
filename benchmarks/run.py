"""``make bench``: run every benchmark, append to reports/bench/results.csv, write summary.md."""

from __future__ import annotations

import logging

import flows  # noqa: F401  (Prefect defaults before prefect is imported)
from benchmarks import (audio_evaluation, audio_generation, backends, evaluation, generation,
                        one_off, scale_out, shapes_quality, tones_quality)
from benchmarks.common import RESULTS, SUMMARY, append_results, write_summary

BENCHMARKS = [generation, shapes_quality, backends, evaluation, audio_generation, tones_quality,
              audio_evaluation, scale_out, one_off]


def main() -> None:
    logging.basicConfig(level=logging.WARNING)
    rows, notes = [], []
    for bench in BENCHMARKS:
        r, n = bench.run()
        rows += r
        notes += n
        for item in r:
            print(f"{item['benchmark']}: ours {item['ours']} vs baseline {item['baseline']} "
                  f"{item['unit']} -> ratio {item['ratio']}", flush=True)
    append_results(rows)
    write_summary(rows, notes)
    print(f"wrote {RESULTS} and {SUMMARY}")


if __name__ == "__main__":
    main()
