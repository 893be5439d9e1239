"""Rendering results: a plain-text table and a JSON document."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from typing import Any

from bench.result import Result

__all__ = ["OTHER_BUSY", "SATURATED", "format_table", "to_json", "warnings"]

# a generator using this much of one core is (nearly) the bottleneck
SATURATED = 0.90
# CPU s/s used by other processes during a measurement that makes it suspect
OTHER_BUSY = 0.15


def _num(v: float | None, unit: str = "") -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    if unit in ("ms",):
        return f"{v:.3f}" if v < 10 else f"{v:.1f}"
    if unit in ("MB",):
        return f"{v:.1f}"
    if abs(v) >= 100:
        return f"{v:,.0f}"
    return f"{v:.2f}"


def _target(r: Result) -> str:
    if r.target is None:
        return ""
    return ("≥ " if r.higher_is_better else "≤ ") + _num(r.target, r.unit)


def _ok(r: Result) -> str:
    m = r.met
    return "" if m is None else ("yes" if m else "NO")


def _cpu(v: float | None) -> str:
    return "" if v is None else f"{v:.2f}"


def format_table(results: Sequence[tuple[str, Result]]) -> str:
    """``results`` are (suite, result) pairs; one row per result."""
    header = ("suite", "figure", "value", "unit", "target", "met", "srv CPU", "gen CPU", "gen µs/op", "note")
    rows = []
    for suite, r in results:
        us = r.extra.get("client_us_per_op") if r.extra else None
        rows.append(
            (
                suite,
                r.name,
                _num(r.value, r.unit),
                r.unit,
                _target(r),
                _ok(r),
                _cpu(r.server_cpu),
                _cpu(r.client_cpu),
                "" if us is None else f"{us:.1f}",
                r.note,
            )
        )
    widths = [max(len(h), *(len(row[i]) for row in rows)) if rows else len(h) for i, h in enumerate(header)]
    right = {2, 4, 6, 7, 8}

    def fmt(row) -> str:
        cells = [c.rjust(widths[i]) if i in right else c.ljust(widths[i]) for i, c in enumerate(row)]
        return "  ".join(cells).rstrip()

    lines = [fmt(header), "  ".join("-" * w for w in widths).rstrip()]
    lines += [fmt(row) for row in rows]
    return "\n".join(lines)


def warnings(results: Sequence[tuple[str, Result]]) -> list[str]:
    out = []
    for _suite, r in results:
        other = r.extra.get("other_cpu") if r.extra else None
        if other is not None and other >= OTHER_BUSY:
            out.append(
                f"other processes used {other:.2f} CPU s/s during '{r.name}': "
                "the machine was not quiet, the figure may be low"
            )
        if r.client_cpu is not None and r.client_cpu >= SATURATED and "(wrk)" not in r.name:
            srv = f"{r.server_cpu:.2f}" if r.server_cpu is not None else "unknown"
            out.append(
                f"load generator near saturation for '{r.name}' ({r.client_cpu:.2f} CPU s/s, "
                f"server {srv}): the figure may be limited by the generator"
            )
    return out


def to_json(results: Sequence[tuple[str, Result]], meta: dict[str, Any]) -> str:
    doc = {
        "meta": meta,
        "results": [{"suite": s, **r.to_dict()} for s, r in results],
    }
    return json.dumps(doc, indent=2, ensure_ascii=False, default=str)
