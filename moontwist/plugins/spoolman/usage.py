"""What a print used from each spool: grams from millimetres, cost from Spoolman's prices, history fields.

Each history job gets (in ``auxiliary_data``, provider ``spoolman``):

- ``spool_ids``: the spools active while it printed (Moonraker's field, which Mainsail and Fluidd read)
- ``filament_usage``: one entry per tool and spool: millimetres, grams and cost
- ``filament_weight`` and ``filament_cost``: the job's totals, summed in ``auxiliary_totals``
  (None when unknown: the history plugin then leaves them out of the job)
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from moontwist.history_fields import HistoryField

__all__ = ["JobField", "weight_of", "cost_of", "usage_entries"]


def weight_of(length_mm: float, spool: dict[str, Any] | None) -> float | None:
    """Grams of ``length_mm`` of this spool's filament (None without density and diameter)."""
    filament = (spool or {}).get("filament") or {}
    density, diameter = filament.get("density"), filament.get("diameter")
    if not isinstance(density, (int, float)) or not isinstance(diameter, (int, float)):
        return None
    return density * length_mm * math.pi * (diameter / 2) ** 2 / 1000.0


def cost_of(weight_g: float | None, spool: dict[str, Any] | None) -> float | None:
    """The price of ``weight_g`` grams: the spool's price (else its filament's) over the full spool's weight."""
    if weight_g is None or not spool:
        return None
    filament = spool.get("filament") or {}
    price = spool.get("price") if spool.get("price") is not None else filament.get("price")
    full = spool.get("initial_weight") or filament.get("weight")
    if not isinstance(price, (int, float)) or not isinstance(full, (int, float)) or full <= 0:
        return None
    return weight_g * price / full


def usage_entries(used: dict[tuple[str, int], float], spools: dict[int, dict[str, Any]],
                  currency: str | None) -> list[dict[str, Any]]:
    """``filament_usage`` entries: (tool, spool) -> millimetres used, with grams and cost when known."""
    out = []
    for (tool, spool_id), length in sorted(used.items()):
        info = spools.get(spool_id)
        weight = weight_of(length, info)
        cost = cost_of(weight, info)
        out.append({
            "tool": tool,
            "spool_id": spool_id,
            "filament_used": round(length, 2),
            "filament_weight": round(weight, 3) if weight is not None else None,
            "filament_cost": round(cost, 4) if cost is not None else None,
            "currency": currency if cost is not None else None,
        })
    return out


@dataclass(eq=False)
class JobField(HistoryField):
    """A history field whose value the Spoolman plugin computes when the job ends.

    ``on_start`` runs when a job starts (the plugin resets its per-job
    usage); ``compute`` gives the value at the end.
    """

    compute: Callable[[], Any] | None = None
    on_start: Callable[[], None] | None = None

    def start_job(self) -> None:
        super().start_job()
        if self.on_start is not None:
            self.on_start()

    def value(self) -> Any:
        if self.compute is None:
            return None
        value = self.compute()
        if self.precision is not None and isinstance(value, float):
            value = round(value, self.precision)
        return value
