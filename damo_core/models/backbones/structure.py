"""Backbone structure descriptions: the data a NAS search produces and the builders consume.

A structure is a list of :class:`StageSpec`. It lives inline in a model's YAML config, or in a
file in TinyNAS's own text format (a Python literal list of dicts, as written by
alibaba/lightweight-neural-architecture-search), so structures move freely between that tool and
this project.
"""

from __future__ import annotations

import ast
import pprint
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from damo_core.errors import UserInputError

# TinyNAS class name -> this project's block name. DAMO-YOLO's files name the residual classes
# ``SuperResConv*``; TinyNAS's own search writes ``SuperRes*``: both read, the former is written.
_TINYNAS_CLASSES = {
    "ConvKXBNRELU": "conv",
    "SuperResConvK1KX": "res_k1kx",
    "SuperResConvKXKX": "res_kxkx",
}
_TINYNAS_ALIASES = {"SuperResK1KX": "res_k1kx", "SuperResKXKX": "res_kxkx"}
_INNER_CLASSES = {"res_k1kx": "ResConvK1KX", "res_kxkx": "ResConvKXKX"}
BLOCKS = tuple(_TINYNAS_CLASSES.values())


class StructureError(UserInputError):
    """A structure description that cannot become a backbone."""


@dataclass(frozen=True)
class StageSpec:
    """One stage of a TinyNAS backbone.

    ``block`` is ``conv`` for the stem, ``res_k1kx`` (1×1 then k×k) or ``res_kxkx`` (k×k twice)
    for residual stages; how a stage is realised (plain residual, CSP-wrapped, or inverted
    mobile bottleneck) is the backbone type's choice, exactly as in MAE-NAS. ``depth`` is the
    number of blocks, ``btn`` the bottleneck width.
    """

    block: str
    in_channels: int
    out_channels: int
    stride: int
    kernel: int
    depth: int = 1
    btn: int = 0
    # Quantisation bit-widths as TinyNAS files carry them (one per conv: a scalar for the stem, a
    # list of 2 per block for residual stages). They change the MAE-NAS score's bit-width term
    # but not the float network, so they take no part in equality.
    nbits_a: int | tuple[int, ...] | None = field(default=None, compare=False)
    nbits_w: int | tuple[int, ...] | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        if self.block not in BLOCKS:
            raise StructureError(f"block {self.block!r} is not one of {BLOCKS}")
        for name in ("in_channels", "out_channels", "kernel", "depth"):
            if getattr(self, name) < 1:
                raise StructureError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.stride not in (1, 2):
            raise StructureError(f"stride must be 1 or 2, got {self.stride}")


_YAML_KEYS = {"block", "in", "out", "stride", "kernel", "depth", "btn"}


def stages_from_config(items: list[dict[str, Any]], source: str) -> list[StageSpec]:
    """Read the inline YAML form ``{block, in, out, stride, kernel, depth, btn}``."""
    stages = []
    for i, item in enumerate(items):
        unknown = set(item) - _YAML_KEYS
        missing = {"block", "in", "out", "stride", "kernel"} - set(item)
        if unknown or missing:
            raise StructureError(
                f"{source}: backbone.structure[{i}] has unknown keys {sorted(unknown)} "
                f"/ missing keys {sorted(missing)}; allowed: {sorted(_YAML_KEYS)}"
            )
        try:
            stages.append(
                StageSpec(item["block"], item["in"], item["out"], item["stride"],
                          item["kernel"], item.get("depth", 1), item.get("btn", 0))
            )
        except StructureError as err:
            raise StructureError(f"{source}: backbone.structure[{i}]: {err}") from None
    check_chain(stages, source)
    return stages


def stages_to_config(stages: list[StageSpec]) -> list[dict[str, Any]]:
    return [
        {"block": s.block, "in": s.in_channels, "out": s.out_channels, "stride": s.stride,
         "kernel": s.kernel, "depth": s.depth, "btn": s.btn}
        for s in stages
    ]


def check_chain(stages: list[StageSpec], source: str) -> None:
    """Each stage must consume what the previous one produces, starting from RGB."""
    if not stages or stages[0].block != "conv":
        raise StructureError(f"{source}: a structure starts with a 'conv' stem stage")
    if stages[0].in_channels != 3:
        raise StructureError(f"{source}: the stem reads 3 channels, got {stages[0].in_channels}")
    for i, (prev, cur) in enumerate(zip(stages, stages[1:], strict=False), start=1):
        if cur.in_channels != prev.out_channels:
            raise StructureError(
                f"{source}: structure[{i}].in = {cur.in_channels} but structure[{i - 1}].out = "
                f"{prev.out_channels}"
            )


def parse_tinynas(text: str, source: str = "<string>") -> list[StageSpec]:
    """Parse TinyNAS's text format; ``nbitsA``/``nbitsW`` are kept on the stage when present."""
    try:
        raw = ast.literal_eval(text.strip())
    except (ValueError, SyntaxError) as err:
        raise StructureError(f"{source}: not a TinyNAS structure literal ({err})") from None
    if not isinstance(raw, list):
        raise StructureError(f"{source}: expected a list of dicts, got {type(raw).__name__}")
    stages = []
    for i, item in enumerate(raw):
        cls = item.get("class") if isinstance(item, dict) else None
        classes = {**_TINYNAS_CLASSES, **_TINYNAS_ALIASES}
        if cls not in classes:
            raise StructureError(
                f"{source}: structure[{i}].class = {cls!r}; known: {sorted(classes)}"
            )
        try:
            stages.append(
                StageSpec(classes[cls], int(item["in"]), int(item["out"]),
                          int(item["s"]), int(item["k"]), int(item.get("L", 1)),
                          int(item.get("btn", 0)), _nbits(item, "nbitsA", source, i),
                          _nbits(item, "nbitsW", source, i))
            )
        except KeyError as err:
            raise StructureError(f"{source}: structure[{i}] lacks field {err}") from None
    check_chain(stages, source)
    return stages


def _nbits(item: dict[str, Any], key: str, source: str, index: int) -> int | tuple[int, ...] | None:
    value = item.get(key)
    if value is None:
        return None
    values = value if isinstance(value, list | tuple) else [value]
    if not values or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0
                             for v in values):
        raise StructureError(
            f"{source}: structure[{index}].{key} = {value!r}; expected a positive int or a "
            "list of them"
        )
    return tuple(values) if isinstance(value, list | tuple) else int(value)


def format_tinynas(stages: list[StageSpec], with_nbits: bool = False) -> str:
    """Write TinyNAS's text format; ``with_nbits`` adds the bit-width fields, the stage's own
    when it has them, else 8 bits everywhere as TinyNAS emits them."""
    items = []
    for s in stages:
        if s.block == "conv":
            item: dict[str, Any] = {"class": "ConvKXBNRELU", "in": s.in_channels, "k": s.kernel,
                                    "out": s.out_channels, "s": s.stride}
            if with_nbits:
                item.update(nbitsA=_nbits_out(s.nbits_a, 8), nbitsW=_nbits_out(s.nbits_w, 8))
        else:
            cls = next(k for k, v in _TINYNAS_CLASSES.items() if v == s.block)
            item = {"L": s.depth, "btn": s.btn, "class": cls, "in": s.in_channels,
                    "inner_class": _INNER_CLASSES[s.block], "k": s.kernel,
                    "out": s.out_channels, "s": s.stride}
            if with_nbits:
                default = [8] * 2 * s.depth
                item.update(nbitsA=_nbits_out(s.nbits_a, default),
                            nbitsW=_nbits_out(s.nbits_w, default))
        items.append(item)
    return pprint.pformat(items, indent=2, width=100, sort_dicts=True) + "\n"


def _nbits_out(value: int | tuple[int, ...] | None, default: Any) -> Any:
    if value is None:
        return default
    return list(value) if isinstance(value, tuple) else value


def read_structure_file(path: str | Path) -> list[StageSpec]:
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as err:
        raise StructureError(f"cannot read structure file {path}: {err.strerror}") from None
    return parse_tinynas(text, source=str(path))


def describe(stages: list[StageSpec]) -> list[dict[str, Any]]:
    return [asdict(s) for s in stages]
