"""Human-readable summaries (Markdown) of flow results, for the console and Prefect artifacts."""

from __future__ import annotations

from datetime import datetime


def run_id(prefix: str) -> str:
    """``prefix-YYYYmmdd-HHMMSS`` (local time): the name of a run's report folder."""
    return f"{prefix}-{datetime.now().strftime('%Y%m%d-%H%M%S')}"


def generation_markdown(name: str, summary: dict) -> str:
    counts = summary["counts"]
    lines = [f"## Dataset `{name}`", "",
             f"- path: `{summary.get('path', '')}`",
             f"- samples: {counts['samples']} (kept {counts['kept']}, dropped by verification "
             f"{counts['dropped']}, failed {counts['failed']})"]
    if summary.get("wall_seconds"):
        share = summary.get("outside_model_share")
        lines.append(f"- time: {summary['wall_seconds']:.1f} s "
                     f"({summary['samples_per_second']:.2f} samples/s"
                     + (f"; {share:.1%} of it outside model calls" if share is not None else "")
                     + ")")
    lines += ["", "| class | instances (kept samples) |", "|---|---|"]
    lines += [f"| {c} | {n} |" for c, n in counts["instances_per_class"].items()]
    return "\n".join(lines)
