"""What a checkpoint may hold: tensors and plain data, so it loads without unpickling code.

``torch.load(weights_only=True)`` rebuilds only tensors, numbers, strings, ``None`` and
lists/tuples/dicts of them; any other pickled object (a class, a function, a ``Path``) is
refused, so a hostile file cannot run code when it is opened. Every file this project writes is
checked against that rule before it is written (:func:`check_plain`), and older files that held
richer objects are converted once, by a person who trusts them, with :func:`upgrade_checkpoint`
(``damo checkpoint upgrade``), the only place that still unpickles.
"""

from __future__ import annotations

import dataclasses
import warnings
from pathlib import Path, PurePath
from typing import Any

import torch
from torch import Tensor, nn

from damo_core.atomic import atomic_path
from damo_core.errors import InputNotFoundError
from damo_core.models.checkpoint import CheckpointError

# Written into every checkpoint the trainer saves; bump when the layout changes.
FORMAT_KEY = "format"
FORMAT = "damo-checkpoint/1"

_SCALARS = (bool, int, float, str, type(None))
_LEAVES = (*_SCALARS, Tensor, torch.dtype, torch.Size)


def check_plain(obj: Any, where: str = "checkpoint") -> None:
    """Raise TypeError naming the first entry that ``weights_only`` loading would refuse."""
    if isinstance(obj, _LEAVES):
        return
    if isinstance(obj, dict):
        for key, value in obj.items():
            if not isinstance(key, _SCALARS):
                raise TypeError(f"{where}: key {key!r} is a {type(key).__name__}, not plain data")
            check_plain(value, f"{where}.{key}")
        return
    if isinstance(obj, list | tuple):
        for i, value in enumerate(obj):
            check_plain(value, f"{where}[{i}]")
        return
    raise TypeError(f"{where} is a {type(obj).__module__}.{type(obj).__qualname__}; a checkpoint "
                    "holds only tensors, numbers, strings, None and lists/dicts of them")


def to_plain(obj: Any) -> Any:
    """The plain-data equivalent of what older checkpoints stored: modules become their state
    dicts, paths strings, dataclasses dicts, numpy values lists or numbers."""
    if isinstance(obj, _LEAVES):
        return obj
    if isinstance(obj, nn.Module):
        return obj.state_dict()
    if isinstance(obj, PurePath):
        return str(obj)
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return to_plain(dataclasses.asdict(obj))
    if isinstance(obj, dict):
        return {to_plain(k): to_plain(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        items = [to_plain(v) for v in obj]
        return tuple(items) if type(obj) is tuple else items
    if type(obj).__module__ == "numpy":
        return obj.tolist() if hasattr(obj, "tolist") else obj.item()
    raise TypeError(f"cannot convert a {type(obj).__module__}.{type(obj).__qualname__} to "
                    "plain data")


def upgrade_checkpoint(src: str | Path, dst: str | Path | None = None) -> Path:
    """Rewrite a trusted older checkpoint so that it loads with ``weights_only=True``.

    This UNPICKLES ``src``: a hostile file runs its code here. Run it only on files you made
    or trust. ``dst`` defaults to ``src`` (replaced atomically, only after the converted copy
    has been written and re-read safely).
    """
    src = Path(src)
    dst = Path(dst) if dst is not None else src
    if not src.is_file():
        raise InputNotFoundError(f"checkpoint {src} does not exist")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch's FutureWarning about weights_only=False
        try:
            raw = torch.load(src, map_location="cpu", weights_only=False)
        except Exception as err:  # torch raises many types for corrupt files
            raise CheckpointError(f"{src}: cannot be read as a torch checkpoint ({err})") from None
    try:
        plain = to_plain(raw)
        check_plain(plain, str(src))
    except TypeError as err:
        raise CheckpointError(f"{src}: {err}") from None
    if isinstance(plain, dict) and "model_config" in plain:
        plain.setdefault(FORMAT_KEY, FORMAT)
    with atomic_path(dst) as tmp:
        torch.save(plain, tmp)
        torch.load(tmp, map_location="cpu", weights_only=True)  # proves the result is safe
    return dst
