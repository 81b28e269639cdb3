"""A progress display for the local run: which step finished, how many are left, time so far.

KFP's local runner runs tasks one after another and only logs each task's own output, so a
person watching a 10-minute run cannot tell how far it is. Every finished task leaves an
``executor_output.json`` under the run directory; a background thread counts them against
the number of container steps in the compiled DAG and prints one line per finished step.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any


def count_steps(pipeline_spec: dict[str, Any]) -> int:
    """Container steps of a compiled pipeline (condition groups are not steps; their contents
    are counted, so a run whose gates fail ends below the total)."""
    from pipelines.remote import walk_tasks

    components = pipeline_spec["components"]
    return sum(1 for _, task in walk_tasks(pipeline_spec)
               if "dag" not in components[task["componentRef"]["name"]])


class StepProgress:
    """``with StepProgress(root, total):`` prints ``[k/total] step finished (m:ss)`` lines."""

    def __init__(self, root: Path, total: int, *, interval: float = 1.0,
                 echo: Callable[[str], None] = print) -> None:
        self.root, self.total, self.interval, self.echo = root, total, interval, echo
        self._seen: set[Path] = set()
        self._before = set(root.iterdir()) if root.is_dir() else set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._started = time.perf_counter()

    def __enter__(self) -> StepProgress:
        self.echo(f"[0/{self.total}] pipeline started")
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.poll()  # the last step may finish between two polls

    def _watch(self) -> None:
        while not self._stop.wait(self.interval):
            self.poll()

    def poll(self) -> None:
        runs = [p for p in self.root.iterdir() if p.is_dir() and p not in self._before]
        done = sorted((p for run in runs for p in run.rglob("executor_output.json")
                       if p not in self._seen), key=lambda p: p.stat().st_mtime)
        for out in done:
            self._seen.add(out)
            minutes, seconds = divmod(int(time.perf_counter() - self._started), 60)
            self.echo(f"[{len(self._seen)}/{self.total}] {out.parent.name} finished "
                      f"({minutes}:{seconds:02d})")
