"""KISSlicer: ``; key = value`` settings in the header, summary at the end."""

from __future__ import annotations

import re

from .base import NUM, FieldParser, FileContext, float_of, floats_of

__all__ = ["KISSlicerParser"]

_ID = re.compile(r";\sKISSlicer")
_VERSION = re.compile(r";\sversion\s(.*)")
_BUILD_MINUTES = float_of(rf";\sCalculated.*Build\sTime:\s{NUM}\sminutes")


def _estimated_time(ctx: FileContext) -> float | None:
    minutes = _BUILD_MINUTES(ctx)
    return None if minutes is None else round(minutes * 60, 2)


class KISSlicerParser(FieldParser):
    """KISSlicer (``; KISSlicer - ...`` plus ``; version X Y``)."""

    name = "KISSlicer"
    fields = {
        "object_height": floats_of(rf";\sEND_LAYER_OBJECT\sz={NUM}", "tail", max),
        "estimated_time": _estimated_time,
        "layer_height": float_of(rf";\s+max_layer_thickness_mm\s=\s{NUM}", "head"),
        "first_layer_height": float_of(rf";\s+first_layer_thickness_mm\s=\s{NUM}", "head"),
        "first_layer_extr_temp": float_of(rf"; first_layer_C = {NUM}", "head"),
        "first_layer_bed_temp": float_of(rf"; bed_C = {NUM}", "head"),
        "chamber_temp": float_of(rf"; chamber_C = {NUM}", "head"),
        "filament_total": floats_of(rf";\s+Ext #\d+\s+=\s+{NUM}\s*mm", "tail", sum),
    }

    def identify(self, head: str) -> tuple[str, str] | None:
        """Name line; version words are joined with ``-``."""
        if _ID.search(head) is None:
            return None
        m = _VERSION.search(head)
        return self.name, m.group(1).replace(" ", "-") if m else "?"
