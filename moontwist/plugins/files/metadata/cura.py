"""Cura / CuraEngine: ``;KEY:value`` header comments written by the front end,
plus the ``;Filament ... = ...`` lines Moonraker's docs suggest adding to the
start G-code."""

from __future__ import annotations

import re
from typing import Any

from .base import (
    INT,
    NUM,
    REST,
    FieldParser,
    FileContext,
    float_of,
    floats_of,
    int_of,
    line_numbers,
    line_sum,
    text_of,
)
from .thumbnails import thumbnail_from_image_file

__all__ = ["CuraParser"]

_weights = line_numbers(rf";Filament\sweight\s=\s\[{REST}\]", "head")


def _weight_total(ctx: FileContext) -> float | None:
    weights = _weights(ctx)
    return sum(weights) if weights else None


class CuraParser(FieldParser):
    """Cura (``;Generated with Cura_SteamEngine <version>``)."""

    name = "Cura"
    _ID = re.compile(r"Cura_SteamEngine\s(.*)")
    fields = {
        "layer_count": int_of(rf";LAYER_COUNT:{INT}", "head"),
        "object_height": float_of(rf";MAXZ:{NUM}", "head"),
        "estimated_time": floats_of(rf";TIME:{NUM}", "head", max),
        "nozzle_diameter": float_of(rf";Nozzle\sdiameter\s=\s{NUM}", "head"),
        "layer_height": float_of(rf";Layer\sheight:\s{NUM}", "head"),
        "first_layer_height": float_of(rf";MINZ:{NUM}", "head"),
        "first_layer_extr_temp": float_of(rf"M109 S{NUM}", "head"),
        "first_layer_bed_temp": float_of(rf"M190 S{NUM}", "head"),
        "chamber_temp": float_of(rf"M191 S{NUM}", "head"),
        "filament_name": text_of(rf";Filament\sname\s=\s{REST}", "head"),
        "filament_type": text_of(rf";Filament\stype\s=\s{REST}", "head"),
        # ";Filament used: 1.2m, 0.3m" is in metres
        "filament_total": line_sum(rf";Filament\sused:\s{REST}\n", "head", 1000),
        "filament_weight_total": _weight_total,
        "filament_weights": _weights,
    }

    def identify(self, head: str) -> tuple[str, str] | None:
        """``;Generated with Cura_SteamEngine <version>`` line."""
        m = self._ID.search(head)
        return (self.name, m.group(1)) if m else None

    def thumbnails(self, ctx: FileContext) -> list[dict[str, Any]] | None:
        """Embedded thumbnails, else the PNG unpacked from a ``.ufp`` upload
        (``.thumbs/<stem>.png``)."""
        return ctx.thumbnails() or (thumbnail_from_image_file(ctx.path, ctx.log, root=ctx.root) if ctx.thumbs else None)
