"""Several models timed side by side in one process, as ratios to a named baseline.

Why interleave: on a shared or thermally throttled CPU the speed of the machine drifts over
minutes, so timing model A for a minute and then model B for a minute puts the drift into
their ratio. Here every round times every contender once (``runs`` calls each, the order
rotated from round to round so no one always runs first after the others), the ratio to the
baseline is taken *within* each round, and the reported ratio is the median over rounds.
Absolute milliseconds are reported too (median of the per-round p50s), but only the ratios
carry over between machines. How many rounds are enough depends on how noisy the machine is,
so a caller may pass a stopping rule (``until``) instead of trusting a fixed count; see
:mod:`damo_core.bench.verdict` for one.
"""

from __future__ import annotations

import dataclasses
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from damo_core.bench.latency import LatencyStats, Runner, benchmark
from damo_core.errors import UserInputError


@dataclass(frozen=True)
class Contender:
    """One runner to time: ``runner(feed)`` must return only when its outputs are ready."""

    name: str
    runner: Runner
    feed: Any


@dataclass(frozen=True)
class Timing:
    """A contender's per-round statistics (round ``i`` of every contender ran together)."""

    name: str
    rounds: tuple[LatencyStats, ...]

    @property
    def p50_ms(self) -> float:
        """Median over rounds of each round's p50."""
        return statistics.median(r.p50_ms for r in self.rounds)

    @property
    def p99_ms(self) -> float:
        return statistics.median(r.p99_ms for r in self.rounds)

    def ratios_to(self, baseline: Timing) -> list[float]:
        """Per-round ``p50 / baseline p50`` (< 1: faster than the baseline)."""
        if len(baseline.rounds) != len(self.rounds):
            raise ValueError(f"{self.name} and {baseline.name} were not timed in the same "
                             f"rounds ({len(self.rounds)} vs {len(baseline.rounds)})")
        return [r.p50_ms / b.p50_ms for r, b in zip(self.rounds, baseline.rounds, strict=True)]

    def ratio_to(self, baseline: Timing) -> float:
        """Median over rounds of the within-round ratio; drift between rounds cancels."""
        return statistics.median(self.ratios_to(baseline))

    def to_dict(self) -> dict[str, Any]:
        """The medians and every round's full statistics, so a report can be re-judged."""
        return {"name": self.name, "p50_ms": self.p50_ms, "p99_ms": self.p99_ms,
                "rounds_p50_ms": [r.p50_ms for r in self.rounds],
                "rounds": [dataclasses.asdict(r) for r in self.rounds]}


def interleaved(contenders: Sequence[Contender], *, rounds: int = 5, runs: int = 20,
                warmup: int = 5,
                on_round: Callable[[int, dict[str, LatencyStats]], None] | None = None,
                until: Callable[[dict[str, Timing]], bool] | None = None,
                max_rounds: int | None = None) -> dict[str, Timing]:
    """Time every contender in interleaved rounds; see the module docstring.

    ``warmup`` untimed calls precede each contender's timed calls in every round (caches and
    thread pools go cold while the others run). ``on_round(index, stats_by_name)`` is called
    after each round, e.g. to print progress. Without ``until`` exactly ``rounds`` rounds run;
    with it, ``rounds`` is the minimum, and after each round from then on ``until(timings so
    far)`` decides whether to stop, up to ``max_rounds`` rounds (default: ``rounds``).
    """
    names = [c.name for c in contenders]
    if len(set(names)) != len(names):
        raise UserInputError(f"contender names must be unique, got {names}")
    if rounds <= 0:
        raise UserInputError(f"rounds must be positive, got {rounds}")
    limit = rounds if max_rounds is None or until is None else max_rounds
    if limit < rounds:
        raise UserInputError(f"max_rounds ({max_rounds}) must be >= rounds ({rounds})")
    per_round: list[dict[str, LatencyStats]] = []
    for index in range(limit):
        shift = index % len(contenders)
        order = [*contenders[shift:], *contenders[:shift]]
        stats = {c.name: benchmark(c.runner, c.feed, warmup=warmup, runs=runs) for c in order}
        per_round.append(stats)
        if on_round is not None:
            on_round(index, stats)
        if until is not None and index + 1 >= rounds and until(_timings(names, per_round)):
            break
    return _timings(names, per_round)


def _timings(names: list[str], per_round: list[dict[str, LatencyStats]]) -> dict[str, Timing]:
    return {name: Timing(name, tuple(r[name] for r in per_round)) for name in names}
