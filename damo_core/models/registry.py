"""Name → class tables for backbones, necks and heads, filled by decorators.

Configs name a component by string (``type: tinynas_res``); the registry turns that into a class
and the config's remaining keys into its keyword arguments.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from torch import nn

T = TypeVar("T", bound=type[nn.Module])

BACKBONES: dict[str, type[nn.Module]] = {}
NECKS: dict[str, type[nn.Module]] = {}
HEADS: dict[str, type[nn.Module]] = {}


def _register(table: dict[str, type[nn.Module]], name: str) -> Callable[[T], T]:
    def decorator(cls: T) -> T:
        if name in table and table[name] is not cls:
            raise KeyError(f"{name!r} is registered twice ({table[name].__name__}, {cls.__name__})")
        table[name] = cls
        return cls

    return decorator


def register_backbone(name: str) -> Callable[[T], T]:
    return _register(BACKBONES, name)


def register_neck(name: str) -> Callable[[T], T]:
    return _register(NECKS, name)


def register_head(name: str) -> Callable[[T], T]:
    return _register(HEADS, name)
