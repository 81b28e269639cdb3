"""benchmarks/latency.py without yolov8n (its side venv needs the network): which contenders
it times at which precision, how rows and verdicts come out of per-round timings, the adaptive
stopping rule on a fake clock, and one whole run at a tiny size with our own ONNX standing in
for the reference's. No timing is asserted: the benchmark judges the machine, tests do not."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from rich.console import Console

from damo_core.bench import latency
from damo_core.bench.compare import Contender, Timing, interleaved
from damo_core.bench.latency import LatencyStats
from damo_core.bench.precision import CpuFeatures
from damo_core.bench.verdict import FAIL, PASS, UNDECIDED
from tests.bench.scripts import load_script

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "benchmarks" / "latency.py"
NS, NM = "damoyolo_ns", "damoyolo_nm"
FEED = np.zeros((1, 3, 8, 8), np.float32)


def _script():  # type: ignore[no-untyped-def]
    return load_script("latency")


def test_bf16_rows_only_where_the_cpu_has_bf16() -> None:
    bench = _script()
    sapphire = CpuFeatures("Fake Xeon", frozenset({"avx2", "avx512f", "amx_bf16", "amx_int8"}))
    assert bench.precisions_for(sapphire, int8=True) == (["fp32", "bf16", "int8"], None)
    epyc = CpuFeatures("Fake EPYC", frozenset({"avx2"}))
    chosen, note = bench.precisions_for(epyc, int8=True)
    assert chosen == ["fp32", "int8"]
    assert note is not None and "BF16 rows skipped" in note and "Fake EPYC" in note
    assert bench.precisions_for(epyc, int8=False)[0] == ["fp32"]


def test_plan_times_yolov8n_and_the_reference_at_every_precision_of_ours() -> None:
    bench = _script()
    entries = bench.plan([NS, NM], ["fp32", "bf16", "int8"], references={NM}, baseline=True,
                         eager=True)
    names = [e.name for e in entries]
    assert len(set(names)) == len(names)
    assert names[:3] == ["yolov8n fp32", "yolov8n bf16", "yolov8n int8"]
    assert [e.name for e in entries if e.model == NS] == [
        f"{NS} eager", f"{NS} fp32", f"{NS} bf16", f"{NS} int8"]  # no reference for Ns
    for p in ("fp32", "bf16", "int8"):
        assert f"{NM} {p}" in names and f"{NM} ref {p}" in names
    bare = bench.plan([NS], ["fp32"], references=set(), baseline=False, eager=False)
    assert [e.name for e in bare] == [f"{NS} fp32"]


def test_each_precision_runs_its_file_with_its_hint(monkeypatch: pytest.MonkeyPatch,
                                                    tmp_path: Path) -> None:
    bench = _script()
    made: list[tuple[str, str, str]] = []

    def make(model: str, side: str, kind: str) -> Path:
        made.append((model, side, kind))
        return tmp_path / f"{model}-{side}-{kind}.xml"

    runs: list[tuple[str, str]] = []
    monkeypatch.setattr(bench, "make_runner", lambda fmt, path, *, threads, batch, precision: (
        runs.append((Path(path).name, precision)) or (lambda feed: None)))
    artefacts = bench.Artefacts(tmp_path, sizes={NS: 64}, references={NS: tmp_path / "r.onnx"},
                                baseline_onnx=tmp_path / "v8n.onnx", calib=2)
    monkeypatch.setattr(artefacts, "_make", make)
    entries = bench.plan([NS], ["fp32", "bf16", "int8"], references={NS}, baseline=True,
                         eager=False)
    found = bench.contenders(entries, artefacts, threads=2)
    assert [c.name for c in found] == [e.name for e in entries]
    assert dict(zip([e.name for e in entries], runs, strict=True)) == {
        "yolov8n fp32": ("yolov8n-baseline-fp32.xml", "fp32"),
        "yolov8n bf16": ("yolov8n-baseline-fp32.xml", "bf16"),
        "yolov8n int8": ("yolov8n-baseline-int8.xml", "int8"),
        f"{NS} fp32": (f"{NS}-ours-fp32.xml", "fp32"),
        f"{NS} bf16": (f"{NS}-ours-fp32.xml", "bf16"),  # the FP32 IR with the bf16 hint
        f"{NS} int8": (f"{NS}-ours-int8.xml", "int8"),
        f"{NS} ref fp32": (f"{NS}-ref-fp32.xml", "fp32"),
        f"{NS} ref bf16": (f"{NS}-ref-fp32.xml", "bf16"),
        f"{NS} ref int8": (f"{NS}-ref-int8.xml", "int8"),
    }
    assert len(made) == len(set(made)) == 6  # each file made once
    v8n, ours = (c.feed for c in found if c.name in ("yolov8n fp32", f"{NS} ref int8"))
    assert v8n.shape == (1, 3, 640, 640) and v8n.max() <= 1.0  # yolov8n takes 0..1
    assert ours.shape == (1, 3, 64, 64) and ours.max() > 1.0  # DAMO graphs take 0..255


def test_a_reference_openvino_cannot_run_is_skipped_ours_is_not(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    bench = _script()

    def make_runner(fmt, path, *, threads, batch, precision):  # type: ignore[no-untyped-def]
        if Path(path).name == "broken.xml":
            raise RuntimeError("Exception from src/inference\nReshape /head/Unsqueeze failed")
        return lambda feed: None

    monkeypatch.setattr(bench, "make_runner", make_runner)
    artefacts = bench.Artefacts(tmp_path, sizes={NS: 64}, references={NS: tmp_path / "r.onnx"},
                                baseline_onnx=None, calib=2)
    monkeypatch.setattr(artefacts, "_make", lambda model, side, kind: tmp_path / (
        "broken.xml" if (side, kind) == (bench.REF, "int8") else f"{side}-{kind}.xml"))
    entries = bench.plan([NS], ["fp32", "int8"], references={NS}, baseline=False, eager=False)
    found = bench.contenders(entries, artefacts, threads=1)
    assert [c.name for c in found] == [f"{NS} fp32", f"{NS} int8", f"{NS} ref fp32"]
    assert (f"skipped: {NS} ref int8: OpenVINO could not run it (Reshape /head/Unsqueeze "
            "failed)") in capsys.readouterr().out

    artefacts = bench.Artefacts(tmp_path, sizes={NS: 64}, references={}, baseline_onnx=None,
                                calib=2)
    monkeypatch.setattr(artefacts, "_make", lambda model, side, kind: tmp_path / "broken.xml")
    with pytest.raises(RuntimeError, match="Unsqueeze"):  # our own graph failing ends the run
        bench.contenders(entries, artefacts, threads=1)


def _timing(name: str, p50s: list[float]) -> Timing:
    return Timing(name, tuple(LatencyStats.from_times([v] * 3, batch=1, warmup=0)
                              for v in p50s))


DRIFT = [1.0, 1.5, 0.8, 2.0, 1.1, 0.9]  # the machine's speed, round by round
JITTER = [1.0, 1.01, 0.99, 1.02, 0.98, 1.0]  # what is left within a round


def _timings(ms: dict[str, float]) -> dict[str, Timing]:
    """Contenders costing ``ms`` at speed 1, drifting together; ours also jitter."""
    return {name: _timing(name, [v * d * (j if " ref " not in name else 1.0)
                                 for d, j in zip(DRIFT, JITTER, strict=True)])
            for name, v in ms.items()}


def test_rows_compare_each_precision_with_itself_and_judge_the_goals() -> None:
    bench = _script()
    timings = _timings({"yolov8n fp32": 10.0, "yolov8n int8": 6.0,
                        f"{NS} eager": 50.0, f"{NS} fp32": 4.0, f"{NS} int8": 2.0,
                        f"{NS} ref fp32": 5.0, f"{NS} ref int8": 1.6,
                        f"{NM} fp32": 12.0, f"{NM} int8": 10.0})
    found = bench.rows(timings, {NS: 416, NM: 416})
    by = {(r.model, r.precision): r for r in found}
    assert list(by) == [(NS, "eager"), (NS, "fp32"), (NS, "int8"), (NM, "fp32"), (NM, "int8")]
    ns32, ns8 = by[NS, "fp32"], by[NS, "int8"]
    assert ns32.vs_ref is not None and ns32.vs_ref.median == pytest.approx(0.8, rel=0.02)
    assert ns32.verdict is not None and ns32.verdict.decision == PASS  # 0.8 <= 0.9
    assert ns32.ref_ms == pytest.approx(timings[f"{NS} ref fp32"].p50_ms)
    assert ns8.vs_ref is not None and ns8.vs_ref.median == pytest.approx(1.25, rel=0.02)
    assert ns8.vs_baseline is not None and ns8.vs_baseline.median == pytest.approx(2 / 6,
                                                                                   rel=0.02)
    assert ns8.speedup is not None and ns8.speedup.median == pytest.approx(2.0, rel=0.03)
    assert ns8.verdict is not None and ns8.verdict.decision == PASS  # INT8 judged on speed-up
    assert by[NS, "eager"].verdict is None and by[NS, "eager"].verdict_text == "not judged"
    assert by[NS, "eager"].vs_baseline.median == pytest.approx(5.0, rel=0.03)  # vs v8n fp32
    nm32, nm8 = by[NM, "fp32"], by[NM, "int8"]
    assert nm32.verdict is None and nm32.verdict_text == "no reference given"
    assert nm32.vs_ref is None and nm32.ref_ms is None
    assert nm8.verdict is not None and nm8.verdict.decision == FAIL  # 1.2x < 1.5x
    assert len(ns32.per_round["ours/ref"]) == len(DRIFT)
    lines = bench.findings(found)
    assert [line.split(" on this CPU")[0] for line in lines] == [
        f"{NM} is slower than yolov8n at fp32", f"{NM} is slower than yolov8n at int8"]
    json.dumps([r.to_dict() for r in found], allow_nan=False)
    console = Console(record=True, width=220)
    console.print(bench.table(found, rounds=len(DRIFT), threads=2, confidence=0.95))
    text = console.export_text()
    assert "no reference given" in text and "ours/ref <= 0.9" in text
    assert "fp32/int8 >= 1.5" in text and "host:" in text


class Machine:
    """A fake clock; each runner's cost may depend on the round (no real sleeping)."""

    def __init__(self) -> None:
        self.now, self.round = 0.0, 0

    def clock(self) -> float:
        return self.now

    def runner(self, costs_ms: list[float]):  # type: ignore[no-untyped-def]
        def run(_feed: object) -> None:
            self.now += costs_ms[self.round % len(costs_ms)] / 1e3
        return run

    def next_round(self, index: int, _stats: object) -> None:
        self.round = index + 1


@pytest.mark.parametrize(("ref_costs", "rounds", "decision"), [
    ([5.0], 6, PASS),  # ours/ref 0.8 every round: decided at the minimum
    ([8.0, 3.0], 10, UNDECIDED),  # 0.5 / 1.33 by turns: never decided, stops at the maximum
])
def test_rounds_continue_until_every_judged_goal_is_decided(
        monkeypatch: pytest.MonkeyPatch, ref_costs: list[float], rounds: int,
        decision: str) -> None:
    bench = _script()
    machine = Machine()
    monkeypatch.setattr(latency.time, "perf_counter", machine.clock)
    contenders = [Contender(f"{NS} fp32", machine.runner([4.0]), FEED),
                  Contender(f"{NS} int8", machine.runner([2.0]), FEED),
                  Contender(f"{NS} ref fp32", machine.runner(ref_costs), FEED)]
    rule = bench.stop_rule({NS: 64}, confidence=0.95, tolerance=0.05, log=False)
    timings = interleaved(contenders, rounds=6, max_rounds=10, runs=2, warmup=0,
                          on_round=machine.next_round, until=rule)
    assert len(timings[f"{NS} fp32"].rounds) == rounds
    by = {r.precision: r for r in bench.rows(timings, {NS: 64})}
    assert by["fp32"].verdict.decision == decision
    assert by["int8"].verdict.decision == PASS  # 2x, decided from the start
    nothing_judged = bench.stop_rule({NM: 64}, confidence=0.95, tolerance=0.05, log=False)
    assert nothing_judged(timings)  # no row of Nm: nothing to wait for


def test_arguments_are_checked_before_any_work(tmp_path: Path) -> None:
    bench = _script()
    onnx = tmp_path / "ref.onnx"
    onnx.write_bytes(b"not read here")
    args = bench.parse_args(["--models", NS, "--reference-onnx", f"{NS}={onnx}"])
    assert args.reference_onnx == {NS: onnx} and args.min_rounds == 6
    for bad in (["--reference-onnx", f"{NS}={tmp_path / 'missing.onnx'}"],
                ["--reference-onnx", f"damoyolo_x={onnx}"],
                ["--models", NM, "--reference-onnx", f"{NS}={onnx}"],
                ["--min-rounds", "8", "--max-rounds", "7"]):
        with pytest.raises(SystemExit):
            bench.parse_args(bad)


@pytest.mark.slow  # exports, quantises and times four graphs (about a minute on 2 cores)
def test_whole_run_at_tiny_size_with_a_stand_in_reference(tmp_path: Path) -> None:
    from damo_core.export import onnx as onnx_export
    from damo_core.models import build_model

    # Our own ONNX as "the reference": it exercises the reference path (conversion, the same
    # quantisation) without the reference repo; its ratio to ours is not asserted.
    stand_in = onnx_export.export(build_model(NS).eval(), tmp_path / "ref", image_size=64)
    with pytest.raises(SystemExit, match=r"takes \[1, 3, 64, 64\] images, but this run feeds 96"):
        _script().foreign_ir(stand_in, tmp_path / "x.xml", image_size=96)
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("model name\t: Fake CPU 9000\nflags\t\t: fpu sse2 avx2\n\n")
    out = tmp_path / "latency.json"
    env = {**os.environ, "DAMO_CPUINFO": str(cpuinfo), "PYTHONPATH": os.pathsep.join(
        [str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])}
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--models", NS, "--img-size", "64", "--no-baseline",
         "--no-eager", "--threads", "1", "--runs", "1", "--warmup", "0", "--calib", "4",
         "--min-rounds", "6", "--max-rounds", "6", "--reference-onnx", f"{NS}={stand_in}",
         "--json", str(out)],
        env=env, capture_output=True, text=True, timeout=500)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "BF16 rows skipped: this CPU (Fake CPU 9000; avx2)" in done.stdout
    assert "ours / ref" in done.stdout and "rounds used: 6" in done.stdout
    doc = json.loads(out.read_text())
    assert doc["host"]["cpu"] == "Fake CPU 9000" and doc["precisions"] == ["fp32", "int8"]
    assert doc["rounds"] == 6 and doc["baseline"] is None
    assert doc["references"] == {NS: str(stand_in)}
    assert sorted(doc["timings"]) == sorted(
        [f"{NS} fp32", f"{NS} int8", f"{NS} ref fp32", f"{NS} ref int8"])
    assert all(len(t["rounds"]) == 6 for t in doc["timings"].values())
    rows = {r["precision"]: r for r in doc["rows"]}
    assert set(rows) == {"fp32", "int8"}
    assert rows["fp32"]["verdict"]["goal"] == "<= 0.9"
    assert rows["int8"]["verdict"]["goal"] == ">= 1.5"
    for row in rows.values():
        assert row["verdict"]["decision"] in (PASS, FAIL, UNDECIDED)
        assert len(row["per_round"]["ours/ref"]) == 6 and row["vs_baseline"] is None
