"""Several models timed side by side in one process, as ratios to a named baseline.

Why interleave: on a shared or thermally throttled CPU the speed of the machine drifts over
minutes, so timing model A for a minute and then model B for a minute puts the drift into
their ratio. Here every round times every contender once (``runs`` calls each, the order
rotated from round to round so no one always runs first after the others), the ratio to the
baseline is taken *within* each round, and the reported ratio is the median over rounds.
Absolute milliseconds are reported too (median of the per-round p50s), but only the ratios
carry over between machines.
"""

from __future__ import annotations

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
        return {"name": self.name, "p50_ms": self.p50_ms, "p99_ms": self.p99_ms,
                "rounds_p50_ms": [r.p50_ms for r in self.rounds]}


def interleaved(contenders: Sequence[Contender], *, rounds: int = 5, runs: int = 20,
                warmup: int = 5,
                on_round: Callable[[int, dict[str, LatencyStats]], None] | None = None,
                ) -> dict[str, Timing]:
    """Time every contender ``rounds`` times, interleaved; see the module docstring.

    ``warmup`` untimed calls precede each contender's timed calls in every round (caches and
    thread pools go cold while the others run). ``on_round(index, stats_by_name)`` is called
    after each round, e.g. to print progress.
    """
    names = [c.name for c in contenders]
    if len(set(names)) != len(names):
        raise UserInputError(f"contender names must be unique, got {names}")
    if rounds <= 0:
        raise UserInputError(f"rounds must be positive, got {rounds}")
    per_round: list[dict[str, LatencyStats]] = []
    for index in range(rounds):
        shift = index % len(contenders)
        order = [*contenders[shift:], *contenders[:shift]]
        stats = {c.name: benchmark(c.runner, c.feed, warmup=warmup, runs=runs) for c in order}
        per_round.append(stats)
        if on_round is not None:
            on_round(index, stats)
    return {name: Timing(name, tuple(r[name] for r in per_round)) for name in names}
