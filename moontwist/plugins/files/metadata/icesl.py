"""IceSL: ``; key :  value`` settings in the header."""

from __future__ import annotations

import re

from .base import INT, NUM, REST, FieldParser, float_of, int_of, text_of

__all__ = ["IceSLParser"]


def _setting(key: str) -> str:
    return rf";\s{key}\s:\s+"


class IceSLParser(FieldParser):
    """IceSL (``; <IceSL 2.5.0>``)."""

    name = "IceSL"
    _ID = re.compile(r"<IceSL\s(.*)>")
    fields = {
        "layer_count": int_of(_setting("layer_count") + INT, "head"),
        "object_height": float_of(_setting("print_height_mm") + NUM, "head"),
        "estimated_time": float_of(_setting("estimated_print_time_s") + NUM, "head"),
        "nozzle_diameter": float_of(_setting("nozzle_diameter_mm_0") + NUM, "head"),
        "layer_height": float_of(_setting("z_layer_height_mm") + NUM, "head"),
        "first_layer_height": float_of(_setting("z_layer_height_first_layer_mm") + NUM, "head"),
        "first_layer_extr_temp": float_of(_setting("extruder_temp_degree_c_0") + NUM, "head"),
        "first_layer_bed_temp": float_of(_setting("bed_temp_degree_c") + NUM, "head"),
        "chamber_temp": float_of(_setting("chamber_temp_degree_c") + NUM, "head"),
        "filament_name": text_of(_setting("filament_name") + REST, "head"),
        "filament_type": text_of(_setting("filament_type") + REST, "head"),
        "filament_total": float_of(_setting("filament_used_mm") + NUM, "head"),
        "filament_weight_total": float_of(_setting("filament_used_g") + NUM, "head"),
    }

    def identify(self, head: str) -> tuple[str, str] | None:
        """``<IceSL version>``; a non-numeric version is reported as ``-``."""
        m = self._ID.search(head)
        if m is None:
            return None
        version = m.group(1)
        return self.name, version if version[:1].isdigit() else "-"
