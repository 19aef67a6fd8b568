"""The figures of a utility study (``synthmill utility``; the study itself, which trains and
tests a model per modality, is ``evaluation.image.utility``): each arm's figures as means over
seeds with Student-t intervals, each arm's gain over ``real`` paired by seed with its verdict
(gain / loss / tie), the rows of metrics.csv, utility.json and the learning curve."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

from evaluation.config import UtilitySpec
from evaluation.figures import COLUMNS

FIGURES = ("utility_miou", "utility_box_ap", "utility_box_ap50")
GAINS = {"utility_miou": "utility_gain_miou", "utility_box_ap": "utility_gain_box_ap"}


def t_interval(values: np.ndarray, confidence: float) -> tuple[float, float, float]:
    """(mean, low, high): the Student-t interval of the mean of ``values`` (2 or more)."""
    values = np.asarray(values, dtype=np.float64)
    mean = float(values.mean())
    if len(values) < 2 or np.all(values == values[0]):
        return mean, mean, mean
    half = stats.t.ppf(0.5 + confidence / 2, len(values) - 1) * values.std(ddof=1) / np.sqrt(
        len(values))
    return mean, mean - float(half), mean + float(half)


def verdict(low: float, high: float) -> str:
    return "gain" if low > 0 else "loss" if high < 0 else "tie"


def summarize(results: list[dict], spec: UtilitySpec, dataset: str, reference: str) -> pd.DataFrame:
    """metrics.csv rows (``evaluation.figures.COLUMNS``): each figure per arm and budget (group
    ``arm@budget``) as the mean over seeds with its interval; each gain over ``real`` at the same
    budget (paired by seed) with its verdict in ``details``; and ``utility_gain_miou`` in group
    ``all``: real+synthetic over real at the smallest budget, the comparison table's column."""
    frame = pd.DataFrame(results)
    rows = []

    def add(metric, group, values, details=""):
        mean, low, high = t_interval(values, spec.confidence)
        rows.append({"dataset": dataset, "reference": reference, "metric": metric, "value": mean,
                     "ci_low": low, "ci_high": high, "n": len(values),
                     "extractor": "utility-segmenter", "group": group, "details": details})
        return low, high

    for (arm, budget), part in frame.groupby(["arm", "budget"], sort=False):
        for figure in FIGURES:
            add(figure, f"{arm}@{budget}", part.sort_values("seed")[figure].to_numpy())
    base = frame[frame["arm"] == "real"].set_index(["budget", "seed"])
    for (arm, budget), part in frame[frame["arm"] != "real"].groupby(["arm", "budget"], sort=False):
        for b in ([budget] if budget else spec.budgets):
            paired = part.set_index("seed")
            for figure, gain in GAINS.items():
                diff = np.array([paired.loc[s, figure] - base.loc[(b, s), figure]
                                 for s in paired.index if (b, s) in base.index])
                low, high = add(gain, f"{arm}@{b}", diff)
                rows[-1]["details"] = f"{verdict(low, high)} over real@{b}"
    headline = [r for r in rows if r["metric"] == "utility_gain_miou"
                and r["group"] == f"real+synthetic@{spec.budgets[0]}"]
    if headline:
        rows.append({**headline[0], "group": "all"})
    return pd.DataFrame(rows, columns=COLUMNS)


def write_results(out_dir: str | Path, table: pd.DataFrame, results: list[dict],
                  about: dict) -> Path:
    """metrics.csv / metrics.json, utility.json (protocol and every run) and learning_curve.png."""
    from augment.core.io import atomic_write_bytes, atomic_write_json
    from evaluation.evaluate import write_metrics
    from evaluation.plots import learning_curve

    out_dir = Path(out_dir)
    write_metrics(table, out_dir, {"utility": about})
    atomic_write_json(out_dir / "utility.json", {**about, "runs": results})
    atomic_write_bytes(out_dir / "learning_curve.png", learning_curve(table))
    return out_dir / "metrics.csv"


def headline(table: pd.DataFrame) -> str:
    """One line per gain figure: which arm beats real at which budget, or ties."""
    lines = []
    for r in table[table["metric"].isin(GAINS.values()) & (table["group"] != "all")].itertuples():
        lines.append(f"{r.group}: {r.metric.removeprefix('utility_gain_')} "
                     f"{r.value:+.3f} [{r.ci_low:+.3f}, {r.ci_high:+.3f}] -> {r.details}")
    return "\n".join(lines)
