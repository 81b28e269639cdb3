"""Loading checkpoints: this project's own and the reference implementation's released ``.pth``.

The reference names its layers differently (``block_list``, ``rbr_dense``, ``merge_3``...). Each
module here declares how its children were named there in a ``ref_names`` dict (own child path →
reference path); walking a parameter's path through those dicts gives its reference name. So the
mapping lives next to the layers it describes and follows any structure a config builds.
"""

from __future__ import annotations

import pickle
import re
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from damo_core.errors import UserInputError

# Buffers the reference stores that this project recomputes.
_REFERENCE_ONLY = ("head.integral.project", "module.head.integral.project")


class CheckpointError(UserInputError):
    """A checkpoint that does not fit the model; the message lists the differing keys."""


class UnsafeCheckpointError(CheckpointError):
    """A weights file that only full unpickling could open: refused, never executed."""


def reference_name(model: nn.Module, key: str) -> str:
    """The reference implementation's name for this model's state-dict ``key``."""
    parts = key.split(".")
    module: nn.Module | None = model
    out: list[str] = []
    i = 0
    while i < len(parts):
        renames: dict[str, str] = getattr(module, "ref_names", {}) if module is not None else {}
        for j in range(len(parts), i, -1):
            own = ".".join(parts[i:j])
            if own in renames:
                out.append(renames[own])
                module = _child(module, parts[i:j])
                i = j
                break
        else:
            out.append(parts[i])
            module = _child(module, parts[i : i + 1])
            i += 1
    return ".".join(p for p in out if p)


def _child(module: nn.Module | None, path: list[str]) -> nn.Module | None:
    for name in path:
        if module is None:
            return None
        module = module._modules.get(name)
    return module


def reference_key_map(model: nn.Module) -> dict[str, str]:
    """Reference name → own name for every entry of ``model.state_dict()``."""
    return {reference_name(model, key): key for key in model.state_dict()}


def _extract_state_dict(obj: Any, path: Path) -> dict[str, Tensor]:
    if isinstance(obj, dict):
        for key in ("ema", "model", "state_dict"):
            inner = obj.get(key)
            if isinstance(inner, nn.Module):
                return inner.state_dict()
            if isinstance(inner, dict) and inner and all(
                isinstance(v, Tensor) for v in inner.values()
            ):
                return inner
        if obj and all(isinstance(v, Tensor) for v in obj.values()):
            return obj
    raise CheckpointError(
        f"{path}: no state dict found (expected a dict of tensors, or one under 'model', 'ema' "
        "or 'state_dict')"
    )


def convert_state_dict(
    model: nn.Module, state: dict[str, Tensor], source: str
) -> dict[str, Tensor]:
    """Map a state dict in either naming onto ``model``'s keys, or explain what differs.

    Reference-named state dicts also get their stem converted from BGR to RGB input.
    """
    state = {k.removeprefix("module."): v for k, v in state.items() if k not in _REFERENCE_ONLY}
    own = model.state_dict()
    ref_map = reference_key_map(model)
    # Whichever naming shares more keys with the model is the checkpoint's naming.
    if len(set(state) & set(ref_map)) > len(set(state) & set(own)):
        mapped = {ref_map.get(k, f"<unmatched>{k}"): v for k, v in state.items()}
        stem = stem_conv_key(model)
        if stem in mapped and mapped[stem].shape == own[stem].shape:
            mapped[stem] = bgr_to_rgb_stem(mapped[stem])
    else:
        mapped = dict(state)
    missing = sorted(set(own) - set(mapped))
    unexpected = sorted(k.removeprefix("<unmatched>") for k in set(mapped) - set(own))
    wrong_shape = [
        f"{k}: checkpoint {tuple(v.shape)} vs model {tuple(own[k].shape)}"
        for k, v in mapped.items() if k in own and v.shape != own[k].shape
    ]
    if missing or unexpected or wrong_shape:
        name = getattr(model, "name", type(model).__name__)
        raise CheckpointError(
            f"{source} does not fit model {name}: "
            + "; ".join(
                f"{label} ({len(items)}): {', '.join(items[:5])}{' ...' if len(items) > 5 else ''}"
                for label, items in (("missing keys", missing), ("unexpected keys", unexpected),
                                     ("shape mismatches", wrong_shape)) if items
            )
        )
    return mapped


def stem_conv_key(model: nn.Module) -> str:
    """State-dict key of the first conv's weight, the only layer that sees pixel channels."""
    for name, module in model.named_modules():
        if isinstance(module, nn.Conv2d):
            return f"{name}.weight"
    raise CheckpointError("model has no convolution")


def bgr_to_rgb_stem(weight: Tensor) -> Tensor:
    """Reorder a stem kernel's input channels from BGR to RGB.

    The reference decodes images with OpenCV (BGR); this project feeds RGB. Permuting the
    stem's input channels once at load time makes the reference weights see the colours they
    were trained on. A Focus stem's input is 4 space-to-depth patches of 3 channels each.
    """
    out_c, in_c, kh, kw = weight.shape
    if in_c % 3:
        raise CheckpointError(f"stem conv has {in_c} input channels, not a multiple of 3")
    return weight.reshape(out_c, in_c // 3, 3, kh, kw).flip(2).reshape(out_c, in_c, kh, kw)


def load_checkpoint(path: str | Path, model: nn.Module) -> nn.Module:
    """Load a ``.pth``/``.pt`` into ``model``: this project's checkpoints or the reference's."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    return load_state(model, read_torch_file(path), path)


def read_torch_file(path: Path) -> Any:
    """``torch.load(weights_only=True)`` onto the CPU: tensors and plain data only, never code.

    A file that needs full unpickling (an older checkpoint of this project, or a hostile one) is
    refused with the way out for trusted files; a corrupt or foreign file is a CheckpointError
    naming it.
    """
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises many types for corrupt or foreign files
        if isinstance(err, pickle.UnpicklingError) and _offending_global(err):
            raise UnsafeCheckpointError(
                f"{path}: refused: loading it would unpickle Python objects "
                f"({_offending_global(err)}), which can run code; if you made this file or trust "
                f"it, convert it once with 'damo checkpoint upgrade {path}'"
            ) from None
        raise CheckpointError(f"{path}: cannot be read as a torch checkpoint ({err})") from None


def _offending_global(err: Exception) -> str | None:
    """The Python object a refused file asked for, from torch's multi-paragraph message (whose
    advice to allow-list it is what a user must not do with an unknown file); ``None`` when the
    file is merely corrupt."""
    found = re.search(r"GLOBAL ([\w.]+)", str(err))
    return f"it asks for {found.group(1)}" if found else None


def load_state(model: nn.Module, obj: Any, path: str | Path) -> nn.Module:
    """:func:`load_checkpoint` on an object already read from ``path`` (named in errors)."""
    mapped = convert_state_dict(model, _extract_state_dict(obj, Path(path)), str(path))
    model.load_state_dict(mapped, strict=True)
    return model
