"""Compare the shape (keys and JSON types) of a moontwist reply with a recorded Moonraker reply."""

from __future__ import annotations

import json
import os
from typing import Any

DATA = os.path.join(os.path.dirname(os.path.dirname(__file__)), "data")


def recorded(name: str) -> Any:
    """A reply of real Moonraker from tests/data/moonraker_replies.json."""
    with open(os.path.join(DATA, "moonraker_replies.json"), encoding="utf-8") as f:
        return json.load(f)[name]


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    return {str: "string", list: "array", dict: "object"}[type(value)]


def shape_diff(
    expected: Any, actual: Any, path: str = "$", maps: tuple[str, ...] = (), nullable: tuple[str, ...] = ()
) -> list[str]:
    """Differences between the shapes of ``expected`` (recorded) and ``actual``.

    Every key of a recorded object must be present with the same JSON type
    (numbers are one type; a recorded null matches anything).  Extra keys are
    allowed.  Paths in ``maps`` are objects keyed by data (interface names,
    file names): their values are compared with the first value of the other
    side.  Paths in ``nullable`` may be null where the recording had a value.
    Arrays are compared by their first items.
    """
    if expected is None:
        return []
    if actual is None and path in nullable:
        return []
    if _kind(expected) != _kind(actual):
        return [f"{path}: expected {_kind(expected)}, got {_kind(actual)} ({json.dumps(actual)[:60]})"]
    problems: list[str] = []
    if isinstance(expected, dict):
        if path in maps:
            if expected and actual:
                item = f"{path}.*"
                problems += shape_diff(next(iter(expected.values())), next(iter(actual.values())), item, maps, nullable)
            return problems
        for key, value in expected.items():
            if key not in actual:
                problems.append(f"{path}.{key}: missing")
            else:
                problems += shape_diff(value, actual[key], f"{path}.{key}", maps, nullable)
    elif isinstance(expected, list) and expected and actual:
        problems += shape_diff(expected[0], actual[0], f"{path}[]", maps, nullable)
    return problems
