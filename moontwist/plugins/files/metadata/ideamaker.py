"""Raise3D ideaMaker: ``;Key: value`` header comments."""

from __future__ import annotations

import math
import re

from .base import NUM, REST, Extractor, FieldParser, FileContext, float_of, floats_of, text_of

__all__ = ["IdeaMakerParser"]

_USED = rf";Material.\d\sUsed:\s+{NUM}"
_lengths = floats_of(_USED, "tail", list)
_diameters = floats_of(rf";Filament\sDiameter\s.\d:\s+{NUM}", "head", list)
_densities = floats_of(rf";Filament\sDensity\s.\d:\s+{NUM}", "head", list)


def _weight_total(ctx: FileContext) -> float | None:
    """Mass from length, diameter and density of each filament (g)."""
    lengths = _lengths(ctx) or []
    diameters = _diameters(ctx) or []
    densities = _densities(ctx) or []
    if not len(lengths) == len(diameters) == len(densities):
        return None
    return sum(
        math.pi / 4 * d**2 * length * rho / 10**6
        for length, d, rho in zip(lengths, diameters, densities)
    )


def _either(*getters: Extractor) -> Extractor:
    def get(ctx: FileContext) -> str | None:
        for g in getters:
            value = g(ctx)
            if value:
                return value
        return None

    return get


class IdeaMakerParser(FieldParser):
    """ideaMaker (``;Sliced by ideaMaker <version>, ...``)."""

    name = "IdeaMaker"
    _ID = re.compile(r"\sideaMaker\s(.*),")
    fields = {
        "object_height": float_of(rf";Bounding Box:(?:\s+{NUM})+", "head"),
        "estimated_time": float_of(rf";Print\sTime:\s{NUM}"),
        "nozzle_diameter": float_of(rf";Dimension:(?:\s\d+\.\d+){{3}}\s{NUM}", "head"),
        "layer_height": float_of(rf";LAYER:1\s*.*\s*;HEIGHT:{NUM}", "head"),
        "first_layer_height": float_of(rf";LAYER:0\s*.*\s*;HEIGHT:{NUM}", "head"),
        "first_layer_extr_temp": float_of(rf"M109 T0 S{NUM}", "head"),
        "first_layer_bed_temp": float_of(rf"M190 S{NUM}", "head"),
        "chamber_temp": float_of(rf"M191 S{NUM}", "head"),
        "filament_name": _either(
            text_of(rf";Filament\sName\s.\d:\s{REST}", "head"),
            text_of(rf";Filament\sname\s=\s{REST}", "head"),
        ),
        "filament_type": _either(
            text_of(rf";Filament\sType\s.\d:\s{REST}", "head"),
            text_of(rf";Filament\stype\s=\s{REST}", "head"),
        ),
        "filament_total": floats_of(_USED, "tail", sum),
        "filament_weight_total": _weight_total,
    }

    def identify(self, head: str) -> tuple[str, str] | None:
        """``ideaMaker <version>,`` in the header."""
        m = self._ID.search(head)
        return (self.name, m.group(1)) if m else None
