"""benchmarks/worker_start.py at a tiny size, once: every case trains in its own process and
the report holds each case's medians and the ratio against forked workers. No timing is
asserted: the benchmark prints numbers, it does not judge the machine."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "benchmarks" / "worker_start.py"


def test_whole_run_at_tiny_size(tmp_path: Path) -> None:
    out = tmp_path / "worker_start.json"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])}
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--model", "damoyolo_t", "--images", "24",
         "--img-size", "64", "--batch", "4", "--workers", "1", "--epochs", "2",
         "--rounds", "1", "--json", str(out)],
        env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(out.read_text())
    assert list(result["cases"]) == ["fork", "forkserver", "no workers"]
    for row in result["cases"].values():
        # one round of two epochs; the first epoch of each process is left out
        assert row["epochs"] == 1 and row["epoch_s"] > 0 and row["system_s"] >= 0
    lines = done.stdout.splitlines()
    assert "damoyolo_t at 64 px, batch 4, 1 workers" in lines[0]
    assert lines[2].split()[0] == "fork" and lines[2].endswith("1.00x")
    assert lines[3].startswith("forkserver") and lines[4].startswith("no workers")
