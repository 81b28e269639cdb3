"""Interleaved side-by-side timing: ratios within a round cancel the machine's drift, the
order rotates, a stopping rule decides how many rounds run, and a cached side environment is
rebuilt unless completely installed."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from damo_core.bench import latency
from damo_core.bench.compare import Contender, interleaved
from damo_core.bench.side_env import READY_MARKER, SideEnv, SideEnvError

FEED = np.zeros((1, 3, 8, 8), np.float32)


class Machine:
    """A fake clock whose speed the test changes between rounds (no real sleeping)."""

    def __init__(self) -> None:
        self.now, self.slowdown, self.calls = 0.0, 1.0, []

    def clock(self) -> float:
        return self.now

    def runner(self, name: str, cost_s: float):  # type: ignore[no-untyped-def]
        def run(_feed: object) -> None:
            self.calls.append(name)
            self.now += cost_s * self.slowdown
        return run


def test_ratios_cancel_drift_between_rounds(monkeypatch: pytest.MonkeyPatch) -> None:
    machine = Machine()
    monkeypatch.setattr(latency.time, "perf_counter", machine.clock)
    contenders = [Contender("base", machine.runner("base", 0.010), FEED),
                  Contender("half", machine.runner("half", 0.005), FEED),
                  Contender("triple", machine.runner("triple", 0.030), FEED)]
    speeds = iter([3.0, 0.5, 1.0, 1.0])  # the machine slows down 3x after round 1, ...

    def next_speed(index: int, stats: dict) -> None:  # type: ignore[type-arg]
        assert set(stats) == {"base", "half", "triple"}
        machine.slowdown = next(speeds)

    timings = interleaved(contenders, rounds=4, runs=3, warmup=1, on_round=next_speed)
    base = timings["base"]
    assert [round(r.p50_ms, 6) for r in base.rounds] == [10.0, 30.0, 5.0, 10.0]
    assert timings["half"].ratios_to(base) == pytest.approx([0.5] * 4)
    assert timings["triple"].ratio_to(base) == pytest.approx(3.0)
    assert timings["triple"].p50_ms == pytest.approx(30.0)  # median of 30, 90, 15, 30 ms
    # 4 calls each per round; the first contender of each round rotates
    firsts = [machine.calls[i * 12] for i in range(4)]
    assert firsts == ["base", "half", "triple", "base"]


def test_until_adds_rounds_after_the_minimum_up_to_the_maximum(
        monkeypatch: pytest.MonkeyPatch) -> None:
    machine = Machine()
    monkeypatch.setattr(latency.time, "perf_counter", machine.clock)
    contenders = [Contender("base", machine.runner("base", 0.010), FEED),
                  Contender("other", machine.runner("other", 0.020), FEED)]
    asked: list[int] = []

    def after(rounds: int):  # type: ignore[no-untyped-def]
        def until(timings: dict) -> bool:  # type: ignore[type-arg]
            n = len(timings["base"].rounds)
            assert len(timings["other"].rounds) == n  # every contender in every round
            asked.append(n)
            return n >= rounds
        return until

    timings = interleaved(contenders, rounds=3, max_rounds=10, runs=2, warmup=0,
                          until=after(5))
    assert asked == [3, 4, 5]  # not asked before the minimum, stopped when it said so
    assert len(timings["base"].rounds) == 5
    assert timings["other"].ratio_to(timings["base"]) == pytest.approx(2.0)
    asked.clear()
    capped = interleaved(contenders, rounds=3, max_rounds=4, runs=1, warmup=0,
                         until=after(99))
    assert asked == [3, 4] and len(capped["base"].rounds) == 4
    doc = capped["other"].to_dict()
    assert len(doc["rounds"]) == len(doc["rounds_p50_ms"]) == 4  # every round kept
    assert doc["rounds"][0]["p50_ms"] == pytest.approx(20.0)
    assert len(interleaved(contenders, rounds=2, max_rounds=9, runs=1)["base"].rounds) == 2


def test_bad_requests() -> None:
    one = Contender("a", lambda _x: None, FEED)
    with pytest.raises(ValueError, match="unique"):
        interleaved([one, one], rounds=1, runs=1)
    with pytest.raises(ValueError, match="rounds must be positive"):
        interleaved([one], rounds=0)
    with pytest.raises(ValueError, match="max_rounds"):
        interleaved([one], rounds=3, max_rounds=2, until=lambda _t: True)
    short = interleaved([one], rounds=1, runs=1)["a"]
    long = interleaved([one], rounds=2, runs=1)["a"]
    with pytest.raises(ValueError, match="not timed in the same rounds"):
        long.ratio_to(short)


def test_side_env_builds_once_runs_and_reports_failures(tmp_path: Path) -> None:
    env = SideEnv(tmp_path / "venv", [])
    assert not env.is_ready()
    with pytest.raises(SideEnvError, match="not built"):
        env.run(tmp_path / "x.py")
    env.ensure(log=False)
    assert env.is_ready()
    script = tmp_path / "where.py"
    script.write_text("import sys\nprint(sys.prefix)\n")
    assert Path(env.run(script).strip()) == env.path.resolve()
    assert Path(sys.prefix) != env.path.resolve()
    bad = tmp_path / "bad.py"
    bad.write_text("import sys\nprint('line one', file=sys.stderr)\nsys.exit(3)\n")
    with pytest.raises(SideEnvError, match=r"bad.py in the side environment .* failed "
                                           r"\(exit 3\):\nline one"):
        env.run(bad)
    stamp = (env.path / "stamp")
    stamp.write_text("kept while ready")
    env.ensure(log=False)
    assert stamp.exists()  # ready: reused, not rebuilt
    (env.path / READY_MARKER).unlink()  # an install that never finished
    assert not SideEnv(env.path, []).is_ready()
    SideEnv(env.path, []).ensure(log=False)
    assert not stamp.exists() and env.is_ready()  # rebuilt from scratch
    assert not SideEnv(env.path, ["six==1.16.0"]).is_ready()  # other pins: not this venv
