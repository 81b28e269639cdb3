"""OpenVINO CPU plugins freed out of order must not leave a freed signal stack behind.

On an AMX CPU the unpinned sequence below (two runners, the first dropped first, then a
Python signal handler run for a child's exit) killed the interpreter with SIGSEGV; it runs
in a subprocess so that a regression fails this test instead of the whole test run.
"""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path

import pytest

pytest.importorskip("openvino")

from damo_core.export import signal_stack  # noqa: E402

SCRIPT = """
import gc, signal, subprocess, sys
from damo_core.export import openvino, signal_stack
from damo_core.models import build_model

xml = openvino.export(build_model("damoyolo_ns", num_classes=2).eval(), sys.argv[1],
                      image_size=64)
first, second = openvino.OpenVINORunner(xml, threads=1), openvino.OpenVINORunner(xml, threads=1)
del first; gc.collect()
del second; gc.collect()
children = []
signal.signal(signal.SIGCHLD, lambda *args: children.append(args[0]))
for _ in range(3):
    subprocess.run([sys.executable, "-c", "pass"], check=True)
address, size, disabled = signal_stack.current()
print("handled", len(children), "mapped", disabled or signal_stack.is_mapped(address, size))
"""


def test_pin_installs_one_mapped_stack_per_thread() -> None:
    signal_stack.pin()
    address, size, disabled = signal_stack.current()
    assert not disabled and size >= signal_stack.STACK_BYTES
    assert signal_stack.is_mapped(address, size)
    signal_stack.pin()
    assert signal_stack.current() == (address, size, False)  # pinned once, not re-made

    seen: list[tuple[int, int, bool]] = []
    worker = threading.Thread(target=lambda: (signal_stack.pin(),
                                              seen.append(signal_stack.current())))
    worker.start()
    worker.join()
    assert seen and seen[0][0] != address  # threads never share a signal stack


def test_runners_freed_in_creation_order_keep_signal_handlers_working(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "-c", SCRIPT, str(tmp_path)], capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, (proc.returncode, proc.stderr[-2000:])
    words = proc.stdout.split()
    assert words[0] == "handled" and int(words[1]) >= 3, proc.stdout  # the handler ran
    assert words[-1] == "True", proc.stdout
