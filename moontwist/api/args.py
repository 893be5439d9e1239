"""Argument declarations and validation shared by every transport.

HTTP query strings arrive as text (with optional ``name:type`` hints); JSON
bodies and JSON-RPC params arrive typed. The same declaration converts and
checks both, so an error always names the argument, the value and the type.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

from moontwist import jsonutil
from moontwist.api.errors import ArgumentError, ServerError
from moontwist.api.limits import check_depth

__all__ = ["Arg", "REQUIRED", "parse_query", "validate", "json_schema"]


class _Required:
    def __repr__(self) -> str:
        return "REQUIRED"


REQUIRED: Any = _Required()

_TRUE = frozenset(("true", "1", "yes", "on"))
_FALSE = frozenset(("false", "0", "no", "off"))
_SCHEMA_TYPES = {
    "str": {"type": "string"},
    "int": {"type": "integer"},
    "float": {"type": "number"},
    "bool": {"type": "boolean"},
    "list": {"type": "array"},
    "dict": {"type": "object"},
    "any": {},
}


@dataclass(frozen=True)
class Arg:
    """One declared argument of an endpoint."""

    name: str
    type: str = "str"
    default: Any = None
    required: bool = False
    description: str = ""
    choices: tuple[Any, ...] | None = None
    minimum: float | None = None
    maximum: float | None = None
    nullable: bool = False
    # The type of every element of a "list" argument.
    items: str | None = None
    extra: dict[str, Any] = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        if self.type not in _SCHEMA_TYPES:
            raise ValueError(f"Arg {self.name!r}: unknown type {self.type!r}")
        if self.items is not None and (self.type != "list" or self.items not in _SCHEMA_TYPES):
            raise ValueError(f"Arg {self.name!r}: items={self.items!r} needs type 'list' and a known item type")

    def schema(self) -> dict[str, Any]:
        """This argument as a JSON schema fragment."""
        out = dict(_SCHEMA_TYPES[self.type])
        if self.items is not None:
            out["items"] = dict(_SCHEMA_TYPES[self.items])
        if self.nullable and "type" in out:
            out["type"] = [out["type"], "null"]
        if self.description:
            out["description"] = self.description
        if self.choices is not None:
            out["enum"] = list(self.choices)
        if self.minimum is not None:
            out["minimum"] = self.minimum
        if self.maximum is not None:
            out["maximum"] = self.maximum
        if not self.required and self.default is not None:
            out["default"] = self.default
        return out


def _describe(value: Any) -> str:
    text = jsonutil.dumps(value) if not isinstance(value, str) else repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _bad(arg: Arg, value: Any, expected: str) -> ArgumentError:
    return ArgumentError(
        f"Invalid argument '{arg.name}': expected {expected}, got {_describe(value)}", arg.name
    )


def _convert(arg: Arg, value: Any) -> Any:
    kind = arg.type
    if value is None and arg.nullable:
        return None
    if kind == "any":
        return value
    if kind == "str":
        if isinstance(value, str):
            return value
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return str(value)
        raise _bad(arg, value, "a string")
    if kind == "bool":
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
            return value.strip().lower() in _TRUE
        if isinstance(value, int) and value in (0, 1):
            return bool(value)
        raise _bad(arg, value, "a boolean")
    if kind == "int":
        if isinstance(value, bool):
            raise _bad(arg, value, "an integer")
        if isinstance(value, int):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str):
            try:
                return int(value.strip())
            except ValueError:
                pass
        raise _bad(arg, value, "an integer")
    if kind == "float":
        if isinstance(value, bool):
            raise _bad(arg, value, "a number")
        if isinstance(value, (int, float)):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value.strip())
            except ValueError:
                pass
        raise _bad(arg, value, "a number")
    expected_type, word = (list, "an array") if kind == "list" else (dict, "an object")
    if isinstance(value, str):
        if kind == "list" and not value.lstrip().startswith("["):
            value = [part.strip() for part in value.split(",") if part.strip()]
        else:
            text = value
            try:
                value = jsonutil.loads(text)
            except ValueError:
                raise _bad(arg, text, word) from None
            try:
                check_depth(text, value)
            except ServerError as exc:
                raise ArgumentError(f"Invalid argument '{arg.name}': {exc.message}", arg.name) from None
    if not isinstance(value, expected_type):
        raise _bad(arg, value, word)
    if arg.items is not None:
        return _convert_items(arg, value)
    return value


def _convert_items(arg: Arg, values: list[Any]) -> list[Any]:
    item = Arg(arg.name, arg.items or "any")
    out = []
    for index, value in enumerate(values):
        try:
            out.append(_convert(item, value))
        except ArgumentError:
            raise ArgumentError(
                f"Invalid argument '{arg.name}': item {index} must be {_ITEM_WORDS[item.type]}, got {_describe(value)}",
                arg.name,
            ) from None
    return out


def validate(args: Sequence[Arg], raw: Mapping[str, Any]) -> dict[str, Any]:
    """Convert and check ``raw`` against the declarations.

    Declared arguments are converted (defaults filled in); undeclared ones are
    passed through unchanged, as Moonraker does.
    """
    out = dict(raw)
    for arg in args:
        if arg.name in raw:
            value = _convert(arg, raw[arg.name])
            if arg.choices is not None and value not in arg.choices:
                raise _bad(arg, value, "one of " + ", ".join(map(str, arg.choices)))
            if arg.minimum is not None and value is not None and value < arg.minimum:
                raise _bad(arg, value, f"a value >= {arg.minimum}")
            if arg.maximum is not None and value is not None and value > arg.maximum:
                raise _bad(arg, value, f"a value <= {arg.maximum}")
            out[arg.name] = value
        elif arg.required:
            raise ArgumentError(f"Missing required argument '{arg.name}'", arg.name)
        else:
            out[arg.name] = arg.default
    return out


_ITEM_WORDS = {
    "str": "a string",
    "int": "an integer",
    "float": "a number",
    "bool": "a boolean",
    "list": "an array",
    "dict": "an object",
    "any": "a value",
}
_HINTS = {"int", "bool", "float", "json", "str"}


def parse_query(query: str | bytes) -> dict[str, Any]:
    """Parse a query string, honouring ``name:type`` hints (int, bool, float, json)."""
    if isinstance(query, bytes):
        query = query.decode("utf-8", "surrogateescape")
    out: dict[str, Any] = {}
    for key, value in parse_qsl(query, keep_blank_values=True):
        name, _, hint = key.rpartition(":")
        if not name or hint not in _HINTS:
            out[key] = value
            continue
        arg = Arg(name, {"json": "any", "str": "str"}.get(hint, hint))
        if hint == "json":
            try:
                decoded = jsonutil.loads(value)
            except ValueError:
                raise ArgumentError(
                    f"Invalid argument '{name}': expected JSON (type hint ':json'), got {_describe(value)}", name
                ) from None
            try:
                check_depth(value, decoded)
            except ServerError as exc:
                raise ArgumentError(f"Invalid argument '{name}': {exc.message}", name) from None
            out[name] = decoded
        else:
            out[name] = _convert(arg, value)
    return out


def json_schema(args: Sequence[Arg]) -> dict[str, Any]:
    """An object schema for a list of declarations."""
    return {
        "type": "object",
        "properties": {a.name: a.schema() for a in args},
        "required": [a.name for a in args if a.required],
    }
