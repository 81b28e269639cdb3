"""The median's order-statistic interval and the pass/fail/undecided rule, on synthetic
numbers only: the coverage formula against brute-force counting, the interval's real coverage
on a skewed, heavy-tailed noise model, and each way a goal can be decided."""

from __future__ import annotations

import itertools
import json
import math

import numpy as np
import pytest

from damo_core.bench.verdict import (
    FAIL,
    PASS,
    UNDECIDED,
    Goal,
    all_settled,
    coverage,
    judge,
    median_interval,
    min_rounds,
)


@pytest.mark.parametrize("n", [1, 2, 5, 6, 9, 12])
def test_coverage_counts_which_sides_of_the_median_the_draws_fall(n: int) -> None:
    # Each draw lands below or above the median with probability 1/2; [x_(k), x_(n+1-k)]
    # holds the median unless fewer than k draws are below it or fewer than k above it.
    for k in range(1, (n + 1) // 2 + 1):
        hits = sum(1 for below in itertools.product((0, 1), repeat=n)
                   if k <= sum(below) <= n - k)
        assert coverage(n, k) == pytest.approx(hits / 2 ** n)
    with pytest.raises(ValueError, match="not a lower order statistic"):
        coverage(n, (n + 1) // 2 + 1)


def test_min_rounds_is_the_first_count_with_an_interval() -> None:
    for confidence in (0.5, 0.9, 0.95, 0.99):
        n = min_rounds(confidence)
        assert coverage(n, 1) >= confidence
        assert n == 1 or coverage(n - 1, 1) < confidence
    assert min_rounds(0.95) == 6  # what --min-rounds's default and help rely on
    with pytest.raises(ValueError, match="confidence"):
        min_rounds(1.0)


def test_too_few_values_give_no_interval() -> None:
    interval = median_interval([3.0, 1.0, 2.0, 5.0, 4.0], confidence=0.95)
    assert interval.median == 3.0 and interval.n == 5
    assert (interval.low, interval.high) == (-math.inf, math.inf)
    assert interval.half_width == math.inf
    assert interval.to_dict()["low"] is None  # JSON has no infinity
    json.dumps(interval.to_dict(), allow_nan=False)
    assert judge([0.5] * 5, Goal(0.9)).decision == UNDECIDED  # even values far below the goal


def test_interval_is_the_narrowest_pair_of_order_statistics_with_the_confidence() -> None:
    values = list(np.random.default_rng(1).permutation(np.arange(1.0, 21.0)))
    interval = median_interval(values, confidence=0.95)
    assert interval.median == 10.5
    k = int(interval.low)  # values are 1..20, so the bound is its own rank
    assert interval.high == 21 - k
    assert interval.coverage == coverage(20, k) >= 0.95
    assert coverage(20, k + 1) < 0.95  # one rank further in would fall short
    assert interval.half_width == pytest.approx((interval.high - interval.low) / 2 / 10.5)
    wider = median_interval(values, confidence=0.99)
    assert wider.low <= interval.low and wider.high >= interval.high


def _skewed_median(scale: float, sigma: float, outlier: float, share: float) -> float:
    """Median of ``scale * lognormal(0, sigma) * (outlier with probability share, else 1)``,
    by bisection on its CDF."""
    phi = lambda z: 0.5 * (1 + math.erf(z / math.sqrt(2)))  # noqa: E731
    cdf = lambda x: ((1 - share) * phi(math.log(x / scale) / sigma)  # noqa: E731
                     + share * phi(math.log(x / (scale * outlier)) / sigma))
    low, high = scale / 10, scale * outlier * 10
    for _ in range(200):
        mid = (low + high) / 2
        low, high = (mid, high) if cdf(mid) < 0.5 else (low, mid)
    return (low + high) / 2


@pytest.mark.parametrize("n", [6, 9, 15])
def test_interval_covers_the_true_median_of_skewed_noise_as_often_as_stated(n: int) -> None:
    # Per-round ratios on a noisy CPU: right-skewed, with rare 3x outliers (a neighbour's job).
    rng = np.random.default_rng(n)
    truth = _skewed_median(0.8, 0.3, 3.0, 0.1)
    trials = 4000
    draws = 0.8 * rng.lognormal(0.0, 0.3, (trials, n)) * np.where(
        rng.random((trials, n)) < 0.1, 3.0, 1.0)
    hits = sum(iv.low <= truth <= iv.high
               for iv in (median_interval(list(row), confidence=0.95) for row in draws))
    stated = median_interval(list(draws[0]), confidence=0.95).coverage
    assert stated >= 0.95
    # 4000 trials: a binomial standard error of ~0.004 around the exact coverage
    assert abs(hits / trials - stated) < 0.02


def test_a_goal_is_decided_when_the_interval_is_on_one_side() -> None:
    fast = [0.80, 0.82, 0.78, 0.85, 0.81, 0.79]
    verdict = judge(fast, Goal(0.9))
    assert (verdict.decision, verdict.by) == (PASS, "interval") and verdict.settled
    slow = [1.02, 0.98, 1.10, 0.95, 1.00, 1.05]
    assert (judge(slow, Goal(0.9)).decision, judge(slow, Goal(0.9)).by) == (FAIL, "interval")
    speedup = Goal(1.5, at_most=False)
    assert judge([2.0, 1.9, 2.2, 1.8, 2.1, 2.0], speedup).decision == PASS
    assert judge([1.2, 1.3, 1.1, 1.25, 1.2, 1.4], speedup).decision == FAIL
    assert judge([0.9] * 6, Goal(0.9)).decision == PASS  # the bound itself meets the goal
    assert str(Goal(0.9)) == "<= 0.9" and str(speedup) == ">= 1.5"


def test_a_narrow_interval_straddling_the_goal_lets_the_median_decide() -> None:
    just_under = [0.88, 0.89, 0.895, 0.91, 0.885, 0.905]  # median 0.8925, interval 0.88..0.91
    verdict = judge(just_under, Goal(0.9), tolerance=0.05)
    assert verdict.interval.half_width <= 0.05
    assert (verdict.decision, verdict.by) == (PASS, "tolerance")
    assert "median decides" in verdict.describe()
    just_over = [x + 0.015 for x in just_under]  # 0.895..0.925, median 0.9075
    assert (judge(just_over, Goal(0.9)).decision, judge(just_over, Goal(0.9)).by) == (
        FAIL, "tolerance")
    strict = judge(just_under, Goal(0.9), tolerance=0.001)
    assert (strict.decision, strict.by, strict.settled) == (UNDECIDED, "", False)
    assert strict.describe() == UNDECIDED


def test_a_wide_interval_across_the_goal_is_undecided_and_all_settled_says_so() -> None:
    noisy = [0.6, 1.2, 0.7, 1.1, 0.65, 1.15, 0.9]
    verdict = judge(noisy, Goal(0.9))
    assert verdict.decision == UNDECIDED and verdict.interval.half_width > 0.05
    decided = judge([0.5] * 6, Goal(0.9))
    assert not all_settled([decided, verdict])
    assert all_settled([decided]) and all_settled([])
    doc = verdict.to_dict()
    assert doc["decision"] == UNDECIDED and doc["goal"] == "<= 0.9"
    json.dumps(doc, allow_nan=False)


def test_bad_requests() -> None:
    with pytest.raises(ValueError, match="no values"):
        median_interval([])
    with pytest.raises(ValueError, match="confidence"):
        median_interval([1.0], confidence=0.0)
    with pytest.raises(ValueError, match="tolerance"):
        judge([1.0] * 6, Goal(1.0), tolerance=-0.1)
