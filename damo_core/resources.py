"""Files shipped inside the package (model configs, training defaults and presets, label spaces),
found through :mod:`importlib.resources` rather than ``Path(__file__)`` arithmetic, so they are
found the same way from a source checkout, an editable install and a wheel.

Every file read here must be listed under ``[tool.setuptools.package-data]`` in
``pyproject.toml``; ``tests/packaging`` builds the wheel and checks that it holds them all.
"""

from __future__ import annotations

import atexit
import contextlib
import functools
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path

from damo_core.errors import InputNotFoundError

__all__ = ["data_file", "data_names", "data_path", "read_data_text"]

PACKAGE = "damo_core"

# Files extracted from an archive (zip import) to give a real path live until the interpreter
# exits; for an unpacked install (the usual case) nothing is extracted.
_EXTRACTED = contextlib.ExitStack()
atexit.register(_EXTRACTED.close)


def data_file(*parts: str) -> Traversable:
    """``damo_core/<parts>`` as shipped (a file or a directory; it need not exist)."""
    node = resources.files(PACKAGE)
    for part in parts:
        node = node / part
    return node


def _label(parts: tuple[str, ...]) -> str:
    return "/".join((PACKAGE, *parts))


def data_path(*parts: str) -> Path:
    """A real filesystem path of a shipped file, for code that needs one (a config's ``source``,
    relative paths next to it). Raises ``FileNotFoundError`` naming the file if it is absent."""
    ref = data_file(*parts)
    if not ref.is_file():
        raise InputNotFoundError(_missing(parts, ref))
    return ref if isinstance(ref, Path) else _extracted(parts)


@functools.cache
def _extracted(parts: tuple[str, ...]) -> Path:
    return _EXTRACTED.enter_context(resources.as_file(data_file(*parts)))


def read_data_text(*parts: str) -> str:
    """The text of a shipped file; ``FileNotFoundError`` names the file if it is absent."""
    ref = data_file(*parts)
    try:
        return ref.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputNotFoundError(_missing(parts, ref)) from None


def data_names(*parts: str, suffix: str) -> list[str]:
    """Sorted stems of the shipped files ending in ``suffix`` in directory ``damo_core/<parts>``
    (empty if the directory is absent)."""
    folder = data_file(*parts)
    if not folder.is_dir():
        return []
    return sorted(p.name[: -len(suffix)] for p in folder.iterdir()
                  if p.is_file() and p.name.endswith(suffix))


def _missing(parts: tuple[str, ...], ref: Traversable) -> str:
    return (f"package data file {_label(parts)} not found ({ref}); an install without it is "
            "broken: it must be listed under package-data in pyproject.toml")
