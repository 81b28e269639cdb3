"""benchmarks/loader.py at tiny sizes: the whole run once (in a child process, so its moto
server, cache directory and S3 variables never reach other tests), and its report arithmetic.
No timing is asserted: the benchmark prints numbers, it does not judge the machine."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.bench.scripts import load_script

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "benchmarks" / "loader.py"


def _script():  # type: ignore[no-untyped-def]
    return load_script("loader")


def _pass(bench, case: str, round_: int, images_per_s: float):  # type: ignore[no-untyped-def]
    return bench.Pass(case, round_, images=32, seconds=32 / images_per_s, first_batch_s=0.1)


def test_whole_run_at_tiny_size(tmp_path: Path) -> None:
    out = tmp_path / "loader.json"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])}
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--images", "24", "--image-size", "96", "--batch", "4",
         "--workers", "1", "--rounds", "2", "--img-size", "64", "--steps", "1",
         "--warmup-steps", "0", "--keep", str(tmp_path / "work"), "--json", str(out)],
        env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(out.read_text())
    train = result["train_images"]
    assert 0 < train < 24
    assert [p["case"] for p in result["passes"]] == [
        "local disk", "S3 cold", "S3 warm", "S3 cold", "S3 warm", "local disk"]
    # drop_last: whole batches of the train split, the same for every case
    assert {p["images"] for p in result["passes"]} == {train // 4 * 4}
    assert set(result["images_per_s"]) == {"local disk", "S3 cold", "S3 warm"}
    assert all(v > 0 for v in result["ratios"].values())
    assert result["consumption_images_per_s"] > 0
    assert result["image_size"] == 64
    assert "S3 warm / local disk = " in done.stdout and "(target >= 0.80)" in done.stdout
    assert "torch" in result["header"] and "threads" in result["header"]
    assert not list((tmp_path / "work" / "cache" / "blobs" / "tmp").iterdir())


def test_summary_takes_medians_and_judges_the_warm_ratio(capsys: pytest.CaptureFixture) -> None:
    bench = _script()
    rates = {"local disk": [100.0, 50.0, 90.0], "S3 cold": [40.0, 45.0, 10.0],
             "S3 warm": [85.0, 60.0, 95.0]}
    passes = [_pass(bench, case, r, v) for case, vs in rates.items() for r, v in enumerate(vs)]
    summary = bench.summarise(passes, consume=9.0)
    assert summary["images_per_s"]["local disk"] == pytest.approx(90.0)
    assert summary["ratios"]["S3 warm / local disk"] == pytest.approx(85.0 / 90.0)
    assert summary["ratios"]["S3 cold / local disk"] == pytest.approx(40.0 / 90.0)
    assert summary["ratios"]["local disk / consumption"] == pytest.approx(10.0)
    assert summary["warm_pass"] is True
    assert summary["warm_ratio_per_round"] == pytest.approx([0.85, 1.2, 95 / 90], abs=1e-3)
    bench.print_report(summary, "header")
    printed = capsys.readouterr().out
    assert "(target >= 0.80): PASS" in printed
    assert "the model is the bottleneck" in printed

    slow = [p if p.case != "S3 warm" else _pass(bench, p.case, p.round, 50.0) for p in passes]
    summary = bench.summarise(slow, consume=900.0)
    assert summary["warm_pass"] is False
    bench.print_report(summary, "")
    printed = capsys.readouterr().out
    assert "(target >= 0.80): FAIL" in printed
    assert "the loader is the bottleneck" in printed


def test_both_manifests_read_the_same_layout() -> None:
    bench = _script()
    local, remote = bench.source_specs("/data/synth"), bench.source_specs("s3://b/synth")
    assert [s.replace("s3://b/synth", "/data/synth") for s in remote] == local
    assert local[0] == ("train:coco=/data/synth/annotations/instances_train.json,"
                        "images=/data/synth/images/train,split=train")
