"""Fallback for files no slicer parser claims: values read off the G-code."""

from __future__ import annotations

from .base import NUM, FieldParser, float_of, floats_of

__all__ = ["UnknownSlicerParser"]


class UnknownSlicerParser(FieldParser):
    """Slicer ``Unknown``, version ``?``; matches any file."""

    name = "Unknown"
    fields = {
        "object_height": floats_of(rf"G1\sZ{NUM}\s", "tail", max),
        "first_layer_height": floats_of(rf"G1\sZ{NUM}\s", "head", min),
        "first_layer_extr_temp": float_of(rf"M109 S{NUM}", "head"),
        "first_layer_bed_temp": float_of(rf"M190 S{NUM}", "head"),
        "chamber_temp": float_of(rf"M191 S{NUM}", "head"),
    }

    def identify(self, head: str) -> tuple[str, str] | None:
        """Always ``("Unknown", "?")``."""
        return self.name, "?"
