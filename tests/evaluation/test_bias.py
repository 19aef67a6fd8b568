"""Bias audits against their definitions and the planted colour skew of the shapes world."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import binom, binomtest, entropy

from augment.image.world import CLASSES, COLOURS, PALETTE, PLANTED_SKEW, sample_colour
from evaluation.bias import audit_attribute, bias_figures, distribution_frame
from evaluation.presets import PRESETS, SHAPES_COLOUR_PRESET, T2I_SOCIAL_PRESET


def simulate(per_shape, seed, skew=PLANTED_SKEW):
    """Instance colours as the embedded generator's training prior draws them."""
    rng = np.random.default_rng(seed)
    groups = [shape for shape in CLASSES for _ in range(per_shape)]
    return groups, [sample_colour(shape, COLOURS, skew, rng) for shape in groups]


def audit(groups, colours, **kwargs):
    kwargs.setdefault("rounds", 300)
    audits = audit_attribute(groups, colours, COLOURS, attribute="colour", **kwargs)
    return {a.group: a for a in audits}


def test_metrics_equal_their_definitions():
    counts = {"red": 5, "green": 3, "blue": 2}
    values = ("red", "green", "blue", "purple")
    target = {"red": 0.4, "green": 0.3, "blue": 0.2, "purple": 0.1}
    attributes = [v for v, c in counts.items() for _ in range(c)]
    (a,) = audit_attribute(["g"] * 10, attributes, values, target, rounds=50)
    p = np.array([0.5, 0.3, 0.2, 0.0])
    t = np.array(list(target.values()))
    assert a.counts == (5, 3, 2, 0) and a.n == 10
    assert a.metrics["normalised_entropy"][0] == pytest.approx(entropy(p) / np.log(4))
    assert a.metrics["kl_divergence"][0] == pytest.approx(entropy(p, t))
    assert a.metrics["max_abs_deviation"][0] == pytest.approx(0.1)
    assert a.metrics["max_min_ratio"][0] == pytest.approx(0.5 / (0.5 / 10))  # floor: half a count
    assert (a.top_value, a.top_share) == ("red", 0.5)


def test_planted_circle_skew_is_flagged_and_nothing_else():
    audits = audit(*simulate(50, seed=0))
    circle = audits["circle"]
    assert circle.flagged and circle.top_value == "red"
    assert circle.metrics["max_abs_deviation"][1] > circle.null_quantile  # CI excludes no-skew
    assert circle.metrics["normalised_entropy"][2] < 1.0
    assert [g for g, a in audits.items() if a.flagged] == ["circle"]


def test_false_flag_rate_on_uniform_data_is_bonferroni_corrected():
    """100 audits of G = 10 groups of 50 colours drawn uniformly, the target itself, so every flag
    is false: at most 0.05 / G of the groups and 5% of the audits may be flagged. Without the
    division by G a group is flagged at up to 5%, and a third of the audits flag some group."""
    n_groups, audits = 10, 100
    groups = [f"group {g}" for g in range(n_groups) for _ in range(50)]
    rng = np.random.default_rng(0)
    flags = np.array([[a.flagged for a in audit_attribute(
        groups, rng.choice(COLOURS, len(groups)), COLOURS, rounds=1, null_draws=1000, seed=k)]
        for k in range(audits)])  # (audits, groups)
    # the most flags that rates of 0.05 / G (per group) and 0.05 (per audit) make likely
    assert flags.sum() <= binom.ppf(0.999, flags.size, 0.05 / n_groups)
    assert flags.any(axis=1).sum() <= binom.ppf(0.999, audits, 0.05)


def test_flag_threshold_is_divided_by_the_number_of_groups():
    """With two values and a uniform target the max abs deviation is |k/n - 1/2|, so the exact
    p-value of the test is the two-sided binomial test's. Among G = 5 groups, p = 0.021 lies
    between 0.05 / G and 0.05: not flagged; p = 0.0018 is; alone, p = 0.021 is flagged too."""
    values, n = ("heads", "tails"), 100
    heads = {"a": 62, "b": 66, "c": 50, "d": 50, "e": 50}
    groups = [g for g in heads for _ in range(n)]
    coins = [v for k in heads.values() for v in ["heads"] * k + ["tails"] * (n - k)]
    found = {a.group: a for a in audit_attribute(groups, coins, values, rounds=1,
                                                 null_draws=20_000)}
    exact = {g: binomtest(k, n, 0.5).pvalue for g, k in heads.items()}
    assert 0.05 / len(heads) < exact["a"] < 0.05 and exact["b"] < 0.05 / len(heads)
    for g in ("a", "b"):
        assert found[g].p_value == pytest.approx(exact[g], abs=0.003)  # Monte Carlo p-value
    assert [g for g, a in found.items() if a.flagged] == ["b"]
    (alone,) = audit_attribute(["a"] * n, coins[:n], values, rounds=1, null_draws=20_000)
    assert alone.flagged


def width(audit, name):
    _, lo, hi = audit.metrics[name]
    return hi - lo


def test_intervals_shrink_as_n_grows():
    small, large = audit(*simulate(40, seed=1)), audit(*simulate(400, seed=1))
    for shape in CLASSES:
        for name in ("max_abs_deviation", "normalised_entropy"):
            assert width(large[shape], name) < width(small[shape], name)
        assert large[shape].null_quantile < small[shape].null_quantile


def test_given_target_matching_the_skew_is_not_flagged():
    target = {c: (0.6 if c == "red" else 0.08) for c in COLOURS}
    groups, colours = simulate(200, seed=2)
    circles = [c for g, c in zip(groups, colours) if g == "circle"]
    (a,) = audit_attribute(["circle"] * len(circles), circles, COLOURS, target, rounds=200)
    assert not a.flagged


def test_bias_figures_and_distribution_frame():
    audits = list(audit(*simulate(50, seed=0)).values())
    figures = bias_figures(audits)
    assert len(figures) == 4 * len(CLASSES)
    mad = next(f for f in figures if f.metric == "bias_max_abs_deviation" and f.group == "circle")
    assert mad.n == 50 and mad.ci_low <= mad.value <= mad.ci_high
    assert mad.details.startswith("attribute=colour; most over-represented: red")
    assert "FLAGGED" in mad.details
    frame = distribution_frame(audits)
    assert len(frame) == len(CLASSES) * len(COLOURS)
    assert frame.groupby("group")["share"].sum().to_numpy() == pytest.approx(1.0)


def test_bad_input_is_named():
    with pytest.raises(ValueError, match="teal"):
        audit_attribute(["circle"], ["teal"], COLOURS)
    with pytest.raises(ValueError, match="missing"):
        audit_attribute(["circle"], ["red"], COLOURS, target={"red": 1.0})


def test_presets():
    assert PRESETS["shapes-colour"] is SHAPES_COLOUR_PRESET
    (colour,) = SHAPES_COLOUR_PRESET.attributes
    assert colour.values == tuple(PALETTE) and set(SHAPES_COLOUR_PRESET.conditions) == set(CLASSES)
    assert len(T2I_SOCIAL_PRESET.conditions) == 10
    assert all(len(a.prompts) == len(a.values) for a in T2I_SOCIAL_PRESET.attributes)


def test_shapes_colour_prompts_use_the_clip_template():
    from augment.image.clip import COLOUR_TEMPLATE

    (colour,) = SHAPES_COLOUR_PRESET.attributes
    assert colour.prompts == tuple(COLOUR_TEMPLATE.format(c) for c in colour.values)
