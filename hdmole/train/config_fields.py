"""Dataclass configs from YAML mappings, checked as they are built: an unknown key is an error that names
the file and the valid keys, and a value of the wrong type one that names the key and what it must be.

Written here rather than taken from dacite or pydantic: what they add is the type conversion, which is a few
lines for the field types our configs use (numbers, lists, tuples, mappings); what the checker is for is the
messages (the config file, the dotted key, the fix), and it keeps the install free of another dependency."""

from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any


class ConfigError(ValueError):
    """A config that cannot be used: the message names the file, the key and the fix."""


def build_dataclass(cls, value: Any, where: str, source: str):
    """Builds dataclass ``cls`` from a dict, recursively; unknown keys are errors."""
    if value is None:
        return None
    if not isinstance(value, dict):
        raise ConfigError(f"{source}: {where or 'the config'} must be a mapping, got {type(value).__name__}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(value) - names)
    if unknown:
        raise ConfigError(f"{source}: unknown key {where + '.' if where else ''}{unknown[0]}; "
                          f"valid keys{' of ' + where if where else ''}: {', '.join(sorted(names))}")
    kwargs = {}
    for name, raw in value.items():
        hint = hints[name]
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        target = hint if dataclasses.is_dataclass(hint) else (args[0] if len(args) == 1 else None)
        if isinstance(hint, types.UnionType) and target is not None and dataclasses.is_dataclass(target):
            kwargs[name] = build_dataclass(target, raw, f"{where}.{name}" if where else name, source)
        elif dataclasses.is_dataclass(hint):
            kwargs[name] = build_dataclass(hint, raw, f"{where}.{name}" if where else name, source)
        else:
            kwargs[name] = _coerce(raw, hint, f"{where}.{name}" if where else name, source)
    return cls(**kwargs)


def _coerce(value: Any, hint: Any, key: str, source: str) -> Any:
    """Numbers as the field says: YAML reads ``5e-3`` (no dot) as a string, and ``1`` for a float field
    as an int; both are what the user meant."""
    optional = typing.get_origin(hint) in (typing.Union, types.UnionType) and type(None) in typing.get_args(hint)
    if optional:
        if value is None:
            return None
        rest = [a for a in typing.get_args(hint) if a is not type(None)]
        hint = rest[0] if len(rest) == 1 else hint
    # A string where a list belongs would be taken a character at a time ("unknown model part 'e'").
    if typing.get_origin(hint) is list and not isinstance(value, list):
        raise ConfigError(f"{source}: {key} must be a list, e.g. {key.rsplit('.', 1)[-1]}: [{value}], got {value!r}")
    if hint is dict and not isinstance(value, dict):
        _bad(key, value, "a mapping ({key: value, ...})", source)
    what = {float: "a number", int: "a whole number"}.get(hint)
    if what is not None:
        if isinstance(value, bool) or (hint is int and isinstance(value, float) and not value.is_integer()):
            _bad(key, value, what, source)
        try:
            return hint(value)
        except (TypeError, ValueError):
            _bad(key, value, what, source)
    if typing.get_origin(hint) is tuple:
        size = len(typing.get_args(hint))
        try:
            if isinstance(value, (list, tuple)) and len(value) == size:
                return tuple(float(v) for v in value)
        except (TypeError, ValueError):
            pass
        _bad(key, value, f"a list of {size} numbers", source)
    return value


def _bad(key: str, value: Any, what: str, source: str):
    raise ConfigError(f"{source}: {key} must be {what}, got {value!r}")
