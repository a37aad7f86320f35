"""Frozen dataclasses as config specs: one parser, one JSON schema, short errors.

A spec is a frozen dataclass whose fields are declared with :func:`knob` (default, one-line
help, numeric and list limits). :func:`parse` turns a plain mapping (YAML / JSON) into the
dataclass: unknown keys, wrong types and values out of range raise :class:`SpecError`,
whose text is at most three lines (where, what, what is allowed or the nearest known key),
never a schema dump. :func:`json_schema` derives the JSON schema from the same dataclasses,
so the schema an editor validates against cannot drift from what the workflow accepts.
:func:`to_plain` is the inverse of :func:`parse` (JSON-able, every default filled in).

Why not pydantic: the specs are small, frozen and read everywhere; a hundred lines of
type-directed parsing keep the error text ours (a key path and the nearest key) and add no
dependency to every cluster job.
"""

from __future__ import annotations

import dataclasses
import difflib
import types
from collections.abc import Mapping
from dataclasses import MISSING, field, fields, is_dataclass
from typing import Any, Literal, Union, get_args, get_origin, get_type_hints

#: limits a knob may carry, and their JSON-schema names
RULES = {"minimum": "minimum", "maximum": "maximum", "exclusive_minimum": "exclusiveMinimum",
         "exclusive_maximum": "exclusiveMaximum", "multiple_of": "multipleOf",
         "min_items": "minItems", "unique": "uniqueItems"}


class SpecError(ValueError):
    """A config value is wrong. ``str()``: ``[file: ]key.path: problem`` and one hint line."""

    def __init__(self, path: str, problem: str, hint: str = "", source: str | None = None):
        self.path, self.problem, self.hint, self.source = path, problem, hint, source
        head = f"{source}: " if source else ""
        text = f"{head}{path or '(top level)'}: {problem}"
        super().__init__(f"{text}\n  {hint}" if hint else text)

    def in_file(self, source: str | None) -> SpecError:
        """The same error, naming the config file it came from."""
        return SpecError(self.path, self.problem, self.hint, source)


def knob(default: Any = MISSING, help: str = "", **rules: Any) -> Any:
    """A spec field: its default (a mutable or dataclass default is copied per instance),
    its one-line ``help`` (the schema's description) and limits from :data:`RULES`."""
    unknown = set(rules) - set(RULES)
    if unknown:
        raise TypeError(f"knob: unknown rules {sorted(unknown)}")
    metadata = {"help": help, "rules": rules}
    if default is MISSING:
        return field(metadata=metadata)
    if is_dataclass(default) or isinstance(default, dict | list | set):
        return field(default_factory=lambda: _copy(default), metadata=metadata)
    return field(default=default, metadata=metadata)


def _copy(value: Any) -> Any:
    return dataclasses.replace(value) if is_dataclass(value) else type(value)(value)


def join(path: str, key: str | int) -> str:
    if isinstance(key, int):
        return f"{path}[{key}]"
    return f"{path}.{key}" if path else key


def is_key(f: dataclasses.Field) -> bool:
    """A field read from the config (not an ``internal`` one the program sets)."""
    return f.init and not f.metadata.get("internal")


def known_keys(cls: type) -> list[str]:
    return [f.name for f in fields(cls) if is_key(f)]


def unknown_key_error(key: str, known: list[str], path: str) -> SpecError:
    near = difflib.get_close_matches(str(key), known, n=1, cutoff=0.6)
    hint = f"did you mean '{near[0]}'?" if near else f"allowed here: {', '.join(known)}"
    return SpecError(join(path, str(key)), "unknown key", hint)


def parse(cls: type, data: Any, path: str = "") -> Any:
    """``data`` (a mapping) as an instance of the spec dataclass ``cls``.

    After the fields are read, a ``check(path)`` method of the instance (if any) runs the
    checks that relate its fields to each other.
    """
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        raise SpecError(path, f"expected a mapping, got {_shown(data)}",
                        f"allowed keys: {', '.join(known_keys(cls))}")
    known = known_keys(cls)
    for key in data:
        if key not in known:
            raise unknown_key_error(key, known, path)
    hints = get_type_hints(cls)
    values: dict[str, Any] = {}
    for f in fields(cls):
        if not is_key(f):
            continue
        where = join(path, f.name)
        if f.name in data:
            values[f.name] = convert(hints[f.name], data[f.name], where)
            check_rules(values[f.name], f.metadata.get("rules") or {}, where)
        elif f.default is MISSING and f.default_factory is MISSING:
            raise SpecError(where, "required", f.metadata.get("help", ""))
    obj = cls(**values)
    check = getattr(obj, "check", None)
    if callable(check):
        check(path)
    return obj


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _type_name(tp: Any) -> str:
    if tp is type(None):
        return "null"
    if get_origin(tp) is Literal:
        return " | ".join(repr(a) for a in get_args(tp))
    if is_dataclass(tp):
        return "a mapping"
    origin = get_origin(tp)
    if origin in (tuple, list):
        return "a list"
    if origin is dict:
        return "a mapping"
    if _is_union(tp):
        return " or ".join(_type_name(a) for a in get_args(tp))
    return {int: "an integer", float: "a number", bool: "true or false", str: "a string"}.get(
        tp, getattr(tp, "__name__", str(tp)))


def _is_union(tp: Any) -> bool:
    return get_origin(tp) in (Union, types.UnionType)


def convert(tp: Any, value: Any, path: str) -> Any:
    """``value`` as the type ``tp`` (the type hint of a field), or SpecError."""
    if tp is Any:
        return value
    if _is_union(tp):
        args = get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in (a for a in args if a is not type(None)):
            try:
                return convert(arg, value, path)
            except SpecError as err:
                errors.append(err)
        nested = [e for e in errors if e.path != path]  # a deeper error says more
        if nested:
            raise nested[0]
        raise SpecError(path, f"expected {_type_name(tp)}, got {_shown(value)}")
    origin = get_origin(tp)
    if origin is Literal:
        choices = get_args(tp)
        if any(value == c and type(value) is type(c) for c in choices):
            return value
        raise SpecError(path, f"{_shown(value)} is not allowed",
                        f"one of: {', '.join(repr(c) for c in choices)}")
    if is_dataclass(tp):
        return parse(tp, value, path)
    if origin in (tuple, list):
        if not isinstance(value, list | tuple):
            raise SpecError(path, f"expected a list, got {_shown(value)}")
        args = get_args(tp)
        if origin is tuple and args and args[-1] is not Ellipsis:  # fixed length
            if len(value) != len(args):
                raise SpecError(path, f"expected {len(args)} items, got {len(value)}")
            return tuple(convert(a, v, join(path, i)) for i, (a, v) in enumerate(zip(args, value)))
        item = args[0] if args else Any
        return tuple(convert(item, v, join(path, i)) for i, v in enumerate(value))
    if origin is dict:
        if not isinstance(value, Mapping):
            raise SpecError(path, f"expected a mapping, got {_shown(value)}")
        key_tp, value_tp = get_args(tp) or (Any, Any)
        return {convert(key_tp, k, path): convert(value_tp, v, join(path, str(k)))
                for k, v in value.items()}
    if tp is bool:
        if isinstance(value, bool):
            return value
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif tp is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
    elif tp is str:
        if isinstance(value, str):
            return value
    else:
        raise TypeError(f"{path}: spec type {tp!r} is not supported")
    raise SpecError(path, f"expected {_type_name(tp)}, got {_shown(value)}")


def check_rules(value: Any, rules: dict, path: str) -> None:
    """The knob's limits (``minimum`` ... ``unique``) on a converted value."""
    if value is None or not rules:
        return
    if isinstance(value, tuple):
        if "min_items" in rules and len(value) < rules["min_items"]:
            raise SpecError(path, f"needs at least {rules['min_items']} item(s)")
        if rules.get("unique") and len(set(value)) != len(value):
            raise SpecError(path, f"items must be unique, got {list(value)}")
        return
    if not isinstance(value, int | float) or isinstance(value, bool):
        return
    limits = (("minimum", lambda v, r: v >= r, ">="), ("maximum", lambda v, r: v <= r, "<="),
              ("exclusive_minimum", lambda v, r: v > r, ">"),
              ("exclusive_maximum", lambda v, r: v < r, "<"),
              ("multiple_of", lambda v, r: v % r == 0, "a multiple of"))
    for name, ok, words in limits:
        if name in rules and not ok(value, rules[name]):
            raise SpecError(path, f"{value} is out of range", f"must be {words} {rules[name]}")


def to_plain(obj: Any) -> Any:
    """A spec as plain JSON-able data (tuples as lists), every default filled in."""
    if is_dataclass(obj):
        return {f.name: to_plain(getattr(obj, f.name)) for f in fields(obj) if is_key(f)}
    if isinstance(obj, list | tuple):
        return [to_plain(v) for v in obj]
    if isinstance(obj, dict):
        return {k: to_plain(v) for k, v in obj.items()}
    return obj


def json_schema(tp: Any) -> dict:
    """The JSON schema (draft 2020-12 subset) of a spec type."""
    if tp is Any:
        return {}
    if _is_union(tp):
        args = get_args(tp)
        return {"anyOf": [json_schema(a) for a in args]}
    if tp is type(None):
        return {"type": "null"}
    origin = get_origin(tp)
    if origin is Literal:
        return {"enum": list(get_args(tp))}
    if is_dataclass(tp):
        hints = get_type_hints(tp)
        props, required = {}, []
        for f in fields(tp):
            if not is_key(f):
                continue
            prop = json_schema(hints[f.name])
            _schema_rules(prop, f.metadata.get("rules") or {})
            if f.metadata.get("help"):
                prop["description"] = f.metadata["help"]
            if f.default is not MISSING:
                prop["default"] = to_plain(f.default)
            elif f.default_factory is not MISSING:
                prop["default"] = to_plain(f.default_factory())
            else:
                required.append(f.name)
            props[f.name] = prop
        schema = {"type": "object", "additionalProperties": False, "properties": props}
        if required:
            schema["required"] = required
        if tp.__doc__:
            schema["description"] = " ".join(tp.__doc__.split("\n\n")[0].split())
        return schema
    if origin in (tuple, list):
        args = get_args(tp)
        if origin is tuple and args and args[-1] is not Ellipsis:
            return {"type": "array", "prefixItems": [json_schema(a) for a in args],
                    "minItems": len(args), "maxItems": len(args)}
        return {"type": "array", "items": json_schema(args[0] if args else Any)}
    if origin is dict:
        _, value_tp = get_args(tp) or (Any, Any)
        return {"type": "object", "additionalProperties": json_schema(value_tp)}
    names = {bool: "boolean", int: "integer", float: "number", str: "string"}
    if tp in names:
        return {"type": names[tp]}
    raise TypeError(f"spec type {tp!r} has no JSON schema")


def _schema_rules(prop: dict, rules: dict) -> None:
    """Put a knob's limits on the non-null branch of its schema."""
    if not rules:
        return
    target = prop
    if "anyOf" in prop:
        target = next(b for b in prop["anyOf"] if b.get("type") != "null")
    for name, value in rules.items():
        target[RULES[name]] = value
