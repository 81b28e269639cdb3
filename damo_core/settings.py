"""One way in for every settings object: training, augmentation, distillation, model, search.

Settings reach a run through several layers (bundled defaults, a preset or YAML file, ``key=value``
overrides, a pipeline parameter) and used to be checked by five hand-written loaders, each with
its own merge, type check and wording; a nested typo (``augment.mixup_prop``) slipped through the
outer one and failed hours later inside the step that finally read it. Here the settings are
frozen dataclasses (subclasses of :class:`Settings`) and :func:`load_settings` is the only
loader: it merges the layers, rejects an unknown key at any depth naming the layer it came from,
its dotted path and the closest valid key, type-checks every value against the annotation and
runs each class's range checks, all before any work starts. Constructing a settings class
directly runs the same type and range checks.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import re
import types
import typing
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, ClassVar, Literal, TypeVar

import yaml

from damo_core.errors import InputNotFoundError, UserInputError

__all__ = ["ConfigError", "Layer", "Settings", "closest", "coerce", "load_settings",
           "not_one_of", "one_line", "parse_overrides", "read_yaml_layer", "type_name", "typed",
           "unknown_key"]

# One layer of settings: where it came from (a file path, "overrides", a pipeline parameter's
# name) and its mapping; ``None`` sets nothing.
Layer = tuple[str, Mapping[str, Any] | None]
S = TypeVar("S", bound="Settings")


class ConfigError(UserInputError):
    """A setting that cannot be used; the message names its source, dotted path and value."""


class _Invalid(ConfigError):
    """Raised inside a settings class, which knows the field but not which layer set it;
    :func:`load_settings` re-raises it as a :class:`ConfigError` naming source and path."""

    def __init__(self, noun: str, name: str, value: Any, why: str) -> None:
        super().__init__(f"{noun} '{name}' = {value!r} {why}")
        self.name, self.value, self.why = name, value, why


class _Mismatch(Exception):
    """A value that does not fit its annotation; ``why`` completes "<path> = <value> ..."."""

    def __init__(self, why: str) -> None:
        super().__init__(why)
        self.why = why


class Settings:
    """Base of the settings dataclasses (``@dataclass(frozen=True)`` subclasses).

    ``__post_init__`` normalises and type-checks every field, so equal settings compare equal
    (``4`` for a float field becomes ``4.0``, a YAML list for a tuple field a tuple) and a direct
    construction is as safe as a load, then runs :meth:`check`, the class's own range rules.
    ``noun`` names one setting of the class in messages ("training setting 'epochs'").
    """

    noun: ClassVar[str] = "setting"

    def __post_init__(self) -> None:
        hints = _hints(type(self))
        for f in _settable_fields(type(self)):
            value = getattr(self, f.name)
            try:
                object.__setattr__(self, f.name, coerce(value, hints[f.name]))
            except _Mismatch as err:
                raise _Invalid(self.noun, f.name, value, err.why) from None
        self.check()

    def check(self) -> None:
        """Range rules beyond the type; a subclass overrides this with :meth:`require` calls."""

    def require(self, ok: bool, name: str, rule: str) -> None:
        """Fail the field ``name`` with ``rule`` ("must be in [0, 1]") unless ``ok``."""
        if not ok:
            raise _Invalid(self.noun, name, getattr(self, name), rule)

    @classmethod
    def from_dict(cls: type[S], values: Mapping[str, Any] | None, source: str = "<dict>") -> S:
        """One layer over the class defaults (a YAML section, ``distill.key=value`` pairs)."""
        return load_settings(cls, (source, values))

    def as_dict(self) -> dict[str, Any]:
        """Plain data (tuples as lists) as a YAML file or checkpoint holds it; loads back equal."""
        return _plain(dataclasses.asdict(self))  # type: ignore[call-overload]


def load_settings(cls: type[S], *layers: Layer) -> S:
    """``cls`` from its defaults and ``layers``, later layers winning key by key at every depth.

    Every key is checked in the layer that sets it, so the error names that layer; values are
    type- and range-checked once merged, naming the layer that set the offending one.
    """
    merged: dict[str, Any] = {}
    origins: dict[str, str] = {}
    for source, layer in layers:
        if layer is not None:
            _merge(cls, merged, layer, source, "", origins, cls.noun)
    fallback = layers[-1][0] if layers else "defaults"
    return _build(cls, merged, origins, "", fallback, cls.noun)


def _merge(cls: type[Settings], into: dict[str, Any], layer: Any, source: str, prefix: str,
           origins: dict[str, str], noun: str) -> None:
    if not isinstance(layer, Mapping):
        where = f"'{prefix.rstrip('.')}'" if prefix else "the top level"
        raise ConfigError(f"{source}: expected a mapping at {where}, got {type(layer).__name__}")
    hints = _settable_hints(cls)
    for key, value in layer.items():
        path = f"{prefix}{key}"
        if key not in hints:
            raise ConfigError(unknown_key(source, noun, str(key), hints, prefix))
        nested = _settings_class(hints[key])
        if nested is not None and (value is None or isinstance(value, Mapping)):
            sub = into.get(key)
            if not isinstance(sub, dict):
                sub = into[key] = {}
            _merge(nested, sub, value or {}, source, f"{path}.", origins, noun)
        else:
            into[key] = value
            origins[path] = source


def _build(cls: type[S], values: dict[str, Any], origins: dict[str, str], prefix: str,
           fallback: str, noun: str) -> S:
    hints = _settable_hints(cls)
    kwargs: dict[str, Any] = {}
    for f in _settable_fields(cls):
        path = f"{prefix}{f.name}"
        if f.name in values:
            value = values[f.name]
            nested = _settings_class(hints[f.name])
            if nested is not None and isinstance(value, dict):
                value = _build(nested, value, origins, f"{path}.", fallback, noun)
            kwargs[f.name] = value
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise ConfigError(f"{fallback}: missing {noun} '{path}'")
    try:
        return cls(**kwargs)
    except _Invalid as err:
        path = f"{prefix}{err.name}"
        raise ConfigError(_bad_value(origins.get(path, fallback), noun, path, err.value,
                                     err.why)) from None


def typed(value: Any, hint: Any, source: str, noun: str, path: str) -> Any:
    """``value`` checked against ``hint`` outside a settings class (a free-form model section
    against its class's signature, a pipeline parameter against its declared type): the same
    rules and the same message as a settings field."""
    try:
        return coerce(value, hint)
    except _Mismatch as err:
        raise ConfigError(_bad_value(source, noun, path, value, err.why)) from None


def _bad_value(source: str, noun: str, path: str, value: Any, why: str) -> str:
    return f"{source}: {noun} '{path}' = {value!r} {why}"


def coerce(value: Any, hint: Any) -> Any:
    """``value`` as annotated by ``hint``, else :class:`_Mismatch`. Only lossless conversions:
    an int for a float, an integral float for an int (JSON and protobuf transports such as KFP
    parameters send ``4`` as ``4.0``), a list for a tuple, and for a float the string of a
    number written with an exponent and no dot (``5e-4``, which YAML 1.1 leaves a string)."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        return _coerce_union(value, args)
    if origin is Literal:
        if any(value == a and type(value) is type(a) for a in args):
            return value
        raise _Mismatch(f"is {not_one_of(value, args)}")
    if origin in (tuple, list, dict):
        return _coerce_container(value, hint, origin, args)
    if isinstance(hint, type) and issubclass(hint, Settings):
        if isinstance(value, hint):
            return value
        raise _Mismatch(f"must be {type_name(hint)}")
    return _coerce_scalar(value, hint)


def _coerce_union(value: Any, arms: tuple[Any, ...]) -> Any:
    for arm in arms:
        try:
            return coerce(value, arm)
        except _Mismatch:
            continue
    raise _Mismatch(f"must be {' or '.join(type_name(a) for a in arms)}")


def _coerce_container(value: Any, hint: Any, origin: type, args: tuple[Any, ...]) -> Any:
    if origin is dict:
        if not isinstance(value, Mapping):
            raise _Mismatch(f"must be {type_name(hint)}")
        item = args[1] if args else Any
        return {k: _item(v, item, hint) for k, v in value.items()}
    if not isinstance(value, list | tuple):
        raise _Mismatch(f"must be {type_name(hint)}")
    if origin is list:
        return [_item(v, args[0] if args else Any, hint) for v in value]
    if len(args) == 2 and args[1] is Ellipsis:
        return tuple(_item(v, args[0], hint) for v in value)
    if len(value) != len(args):
        raise _Mismatch(f"must be {type_name(hint)}")
    return tuple(_item(v, a, hint) for v, a in zip(value, args, strict=True))


def _item(value: Any, hint: Any, container: Any) -> Any:
    """One element of a container; a bad element fails the container as a whole."""
    try:
        return coerce(value, hint)
    except _Mismatch:
        raise _Mismatch(f"must be {type_name(container)}") from None


# YAML 1.1 (PyYAML) reads a float only with a dot: ``5e-4`` arrives as the string '5e-4'.
_EXPONENT_ONLY = re.compile(r"[-+]?[0-9]+[eE][-+]?[0-9]+")


def _coerce_scalar(value: Any, hint: Any) -> Any:
    number = isinstance(value, int | float) and not isinstance(value, bool)
    if hint is bool and isinstance(value, bool):
        return value
    if hint is int and number and float(value).is_integer():
        return int(value)
    if hint is float and number and math.isfinite(value):
        return float(value)
    if hint is float and isinstance(value, str) and _EXPONENT_ONLY.fullmatch(value.strip()):
        return float(value)
    if hint is str and isinstance(value, str):
        return value
    if hint is type(None) and value is None:
        return None
    if hint in (bool, int, float, str, type(None)):
        raise _Mismatch(f"must be {type_name(hint)}")
    if isinstance(hint, type) and not isinstance(value, hint):
        raise _Mismatch(f"must be a {hint.__name__}")
    return value  # a construct no setting uses (a module signature's Callable): not checked


_NAMES: dict[Any, tuple[str, str]] = {
    bool: ("true or false", "booleans"), int: ("an integer", "integers"),
    float: ("a finite number", "finite numbers"), str: ("a string", "strings"),
    type(None): ("null", "nulls"), Any: ("anything", "values"),
}


def type_name(hint: Any) -> str:
    """How a message names what ``hint`` admits: "an integer", "a list of 2 finite numbers"."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint in _NAMES:
        return _NAMES[hint][0]
    if origin in (typing.Union, types.UnionType):
        return " or ".join(type_name(a) for a in args)
    if origin is Literal:
        return f"one of {list(args)}"
    if origin is tuple and len(args) == 2 and args[1] is Ellipsis:
        return f"a list of {_plural(args[0])}"
    if origin is tuple:
        return f"a list of {len(args)} {_plural(args[0])}"
    if origin is list:
        return f"a list of {_plural(args[0])}" if args else "a list"
    return "a mapping"  # dict and nested settings


def _plural(hint: Any) -> str:
    return _NAMES[hint][1] if hint in _NAMES else "values"


def closest(word: object, candidates: Iterable[str]) -> str | None:
    """The valid name a typo most likely meant, if any is close."""
    found = difflib.get_close_matches(str(word), sorted(candidates), n=1)
    return found[0] if found else None


def unknown_key(source: str, noun: str, key: str, valid: Iterable[str], prefix: str = "") -> str:
    """The one message for a key that is not a setting: its source, dotted path and the closest
    valid key (all valid keys when none is close)."""
    valid = sorted(valid)
    close = closest(key, valid)
    hint = f"did you mean '{prefix}{close}'?" if close else f"valid: {valid}"
    return f"{source}: unknown {noun} '{prefix}{key}'; {hint}"


def not_one_of(value: object, choices: Iterable[object]) -> str:
    """Why an enumerated value is refused: the choices, and the closest one to a typo."""
    choices = list(choices)
    close = closest(value, [str(c) for c in choices]) if isinstance(value, str) else None
    return f"not one of {choices}" + (f"; did you mean '{close}'?" if close else "")


def parse_overrides(pairs: list[str]) -> dict[str, Any]:
    """``["epochs=3", "augment.mosaic_prob=0"]`` → nested dict, values parsed as YAML scalars."""
    out: dict[str, Any] = {}
    for pair in pairs:
        if "=" not in pair:
            raise ConfigError(f"override {pair!r} is not key=value")
        key, raw = pair.split("=", 1)
        node = out
        *parents, leaf = key.strip().split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = yaml.safe_load(raw) if raw.strip() else None
    return out


def read_yaml_layer(path: str | Path, what: str) -> tuple[str, dict[str, Any]]:
    """A YAML file the user named, as a layer; missing, broken or not a mapping is one line.
    ``what`` names the file in the missing-file message ("training config")."""
    path = Path(path)
    if not path.is_file():
        raise InputNotFoundError(f"{what} {path} does not exist")
    try:
        loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as err:
        raise ConfigError(f"{path}: not valid YAML ({one_line(err)})") from None
    if loaded is None:
        return str(path), {}
    if not isinstance(loaded, dict):
        raise ConfigError(f"{path}: expected a mapping, got {type(loaded).__name__}")
    return str(path), loaded


def one_line(err: Exception) -> str:
    """A parser's multi-line message (YAML marks the spot over several lines) as one line."""
    return " ".join(str(err).split())


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def _settable_fields(cls: type) -> list[dataclasses.Field[Any]]:
    """Fields a layer may set; ``metadata={"settable": False}`` marks one the code fills (a
    model config's ``source``)."""
    return [f for f in dataclasses.fields(cls) if f.init and f.metadata.get("settable", True)]


def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _settable_hints(cls: type) -> dict[str, Any]:
    hints = _hints(cls)
    return {f.name: hints[f.name] for f in _settable_fields(cls)}


def _settings_class(hint: Any) -> type[Settings] | None:
    return hint if isinstance(hint, type) and issubclass(hint, Settings) else None
