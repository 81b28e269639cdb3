"""The benchmark scripts (``benchmarks/*.py``, not a package) loaded as modules for tests."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


def load_script(stem: str) -> ModuleType:
    """``benchmarks/<stem>.py`` as module ``<stem>_benchmark``, loaded once; registered before
    it runs, because its dataclasses look their module up in ``sys.modules``."""
    name = f"{stem}_benchmark"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, BENCHMARKS / f"{stem}.py")
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]
