"""A cached virtual environment for a baseline that cannot live beside the project's torch.

Why: comparing against another detector means running *its* exporter, whose dependencies may
clash with this project's pins (ultralytics needs torchvision, and no torchvision wheel works
with the pinned CPU torch). The baseline is therefore exported in its own venv, made once on
first use and reused afterwards, and only the exported file (ONNX) crosses back, to be timed
in the same process and runtime as the project's models.

The venv counts as ready only once its requirements installed completely (a marker file
holding the exact requirement list is written last), so an interrupted install is rebuilt
from scratch instead of being half-used, and changing the pins rebuilds it too.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import venv
from collections.abc import Sequence
from pathlib import Path

from damo_core.atomic import atomic_write_text
from damo_core.errors import UnavailableError

READY_MARKER = ".damo-side-env-ready"


class SideEnvError(UnavailableError):
    """The side environment could not be built, or a command in it failed."""


class SideEnv:
    """``SideEnv(path, ["torch==2.14.1", ...]).ensure()``, then ``.run(script, args)``."""

    def __init__(self, path: str | Path, requirements: Sequence[str]) -> None:
        self.path = Path(path).expanduser()
        self.requirements = list(requirements)

    @property
    def python(self) -> Path:
        return self.path / ("Scripts/python.exe" if sys.platform == "win32" else "bin/python")

    @property
    def _marker(self) -> Path:
        return self.path / READY_MARKER

    def is_ready(self) -> bool:
        try:
            return (self.python.exists() and
                    self._marker.read_text().splitlines() == self.requirements)
        except OSError:
            return False

    def ensure(self, *, log: bool = True) -> SideEnv:
        """Build the venv unless a complete one with the same requirements is there."""
        if self.is_ready():
            return self
        if self.path.exists():
            shutil.rmtree(self.path)
        if log:
            print(f"making the side environment {self.path} (once): pip install "
                  f"{' '.join(self.requirements)}", flush=True)
        venv.EnvBuilder(with_pip=bool(self.requirements)).create(self.path)
        if self.requirements:
            self._check(["-m", "pip", "install", "--disable-pip-version-check",
                         *self.requirements], what="pip install", stream=log)
        atomic_write_text(self._marker, "".join(f"{r}\n" for r in self.requirements))
        return self

    def run(self, script: str | Path, args: Sequence[str] = ()) -> str:
        """Run ``script`` with the venv's Python; returns its stdout, raises with its
        stderr's tail when it fails."""
        if not self.is_ready():
            raise SideEnvError(f"side environment {self.path} is not built; call ensure()")
        return self._check([str(script), *args], what=f"{Path(script).name}")

    def _check(self, args: list[str], *, what: str, stream: bool = False) -> str:
        proc = subprocess.run([str(self.python), *args], text=True,
                              stdout=None if stream else subprocess.PIPE,
                              stderr=None if stream else subprocess.PIPE)
        if proc.returncode != 0:
            tail = "\n".join((proc.stderr or "").strip().splitlines()[-15:])
            raise SideEnvError(f"{what} in the side environment {self.path} failed "
                               f"(exit {proc.returncode})" + (f":\n{tail}" if tail else ""))
        return proc.stdout or ""
