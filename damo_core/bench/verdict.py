"""Pass, fail or undecided for a ratio measured over interleaved rounds, at a stated confidence.

Why: on a shared CPU the ratio of one round can be far from the next (a neighbour's job lands
in one contender's slot), so a verdict read off a fixed handful of rounds flips from run to
run. Here a ratio is the median of its per-round values and its uncertainty is the
distribution-free confidence interval of that median from order statistics: it assumes
nothing about the shape of the noise beyond rounds being independent, and it is exact and
deterministic (no resampling), so the same rounds always give the same verdict. A goal is
decided once the interval lies wholly on one side of it; if the interval still straddles it
but is narrower than a tolerance, the goal sits within measurement precision of the median,
and the median decides (:attr:`Verdict.by` says which). Otherwise it stays undecided, and the
caller either times more rounds or reports it so.

The interval is recomputed after every round, so its confidence holds for each look, and a
little less for the whole sequence of looks an adaptive run makes.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from damo_core.errors import UserInputError

PASS, FAIL, UNDECIDED = "pass", "fail", "undecided"


def coverage(n: int, k: int) -> float:
    """Probability that ``[x_(k), x_(n+1-k)]`` (1-based order statistics of ``n`` independent
    draws from one continuous distribution) contains that distribution's median."""
    if not 1 <= k <= (n + 1) // 2:
        raise UserInputError(f"rank {k} is not a lower order statistic of {n} values")
    return 1.0 - 2.0 * sum(math.comb(n, i) for i in range(k)) / 2.0 ** n


def min_rounds(confidence: float) -> int:
    """The fewest values whose widest interval ``[min, max]`` reaches ``confidence``."""
    _check_confidence(confidence)
    n = 1
    while coverage(n, 1) < confidence:
        n += 1
    return n


@dataclass(frozen=True)
class Interval:
    """The median of ``n`` values and a confidence interval for it.

    ``low``/``high`` are infinite when ``n`` is below :func:`min_rounds` (no pair of order
    statistics reaches the confidence); ``coverage`` is the exact coverage of the interval
    given, at least the confidence asked for.
    """

    median: float
    low: float
    high: float
    coverage: float
    n: int

    @property
    def half_width(self) -> float:
        """Half the interval's width relative to the median (0.05: the median is known to
        ±5 %)."""
        if not (math.isfinite(self.low) and math.isfinite(self.high)) or self.median == 0:
            return math.inf
        return (self.high - self.low) / 2 / abs(self.median)

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe: an interval that does not exist yet has ``low``/``high`` ``None``."""
        bound = lambda v: v if math.isfinite(v) else None  # noqa: E731
        return {"median": self.median, "low": bound(self.low), "high": bound(self.high),
                "coverage": self.coverage, "n": self.n}


def median_interval(values: Sequence[float], confidence: float = 0.95) -> Interval:
    """The median of ``values`` and the narrowest symmetric order-statistic interval around
    it whose coverage is at least ``confidence`` (see the module docstring)."""
    _check_confidence(confidence)
    if not values:
        raise UserInputError("no values to take a median of")
    xs = sorted(float(v) for v in values)
    n = len(xs)
    middle = (xs[(n - 1) // 2] + xs[n // 2]) / 2
    if coverage(n, 1) < confidence:
        return Interval(middle, -math.inf, math.inf, 0.0, n)
    k = 1
    while k + 1 <= (n + 1) // 2 and coverage(n, k + 1) >= confidence:
        k += 1
    return Interval(middle, xs[k - 1], xs[n - k], coverage(n, k), n)


@dataclass(frozen=True)
class Goal:
    """What a ratio must reach: ``<= bound`` (``at_most``, e.g. a latency ratio) or
    ``>= bound`` (e.g. a speed-up)."""

    bound: float
    at_most: bool = True

    def met(self, value: float) -> bool:
        return value <= self.bound if self.at_most else value >= self.bound

    def __str__(self) -> str:
        return f"{'<=' if self.at_most else '>='} {self.bound:g}"


@dataclass(frozen=True)
class Verdict:
    """A goal judged on an interval. ``by``: ``"interval"`` (it lies wholly on one side of
    the goal), ``"tolerance"`` (it straddles the goal but is narrower than the tolerance, so
    the median decided) or ``""`` (undecided)."""

    decision: str
    interval: Interval
    goal: Goal
    by: str
    tolerance: float

    @property
    def settled(self) -> bool:
        """Whether more rounds are still worth timing for this goal."""
        return self.decision != UNDECIDED

    def describe(self) -> str:
        """The decision as a table cell: a decision by the median alone says so."""
        if self.by == "tolerance":
            return (f"{self.decision} (at the goal within ±{self.interval.half_width:.1%}; "
                    "median decides)")
        return self.decision

    def to_dict(self) -> dict[str, Any]:
        return {"decision": self.decision, "by": self.by, "goal": str(self.goal),
                "tolerance": self.tolerance, "interval": self.interval.to_dict()}


def judge(values: Sequence[float], goal: Goal, *, confidence: float = 0.95,
          tolerance: float = 0.05) -> Verdict:
    """Decide ``goal`` on the per-round ``values`` (see the module docstring)."""
    if tolerance < 0:
        raise UserInputError(f"tolerance must be >= 0, got {tolerance}")
    interval = median_interval(values, confidence)
    low_met, high_met = goal.met(interval.low), goal.met(interval.high)
    if low_met and high_met:
        return Verdict(PASS, interval, goal, "interval", tolerance)
    if not low_met and not high_met:
        return Verdict(FAIL, interval, goal, "interval", tolerance)
    if interval.half_width <= tolerance:
        decision = PASS if goal.met(interval.median) else FAIL
        return Verdict(decision, interval, goal, "tolerance", tolerance)
    return Verdict(UNDECIDED, interval, goal, "", tolerance)


def all_settled(verdicts: Iterable[Verdict]) -> bool:
    """True when no verdict would gain from another round (vacuously true for none)."""
    return all(v.settled for v in verdicts)


def _check_confidence(confidence: float) -> None:
    if not 0 < confidence < 1:
        raise UserInputError(f"confidence must be in (0, 1), got {confidence}")
