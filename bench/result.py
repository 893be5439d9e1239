"""What a suite returns: one :class:`Result` per figure."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

__all__ = ["Result"]


@dataclass
class Result:
    """One measured figure.

    ``target`` is optional; ``higher_is_better`` says which side of it passes. ``server_cpu``
    and ``client_cpu`` are CPU seconds per wall-clock second during the measurement (1.0 = one
    core busy) for the server under test and for the load generator itself.
    """

    name: str
    value: float
    unit: str
    target: float | None = None
    higher_is_better: bool = True
    server_cpu: float | None = None
    client_cpu: float | None = None
    note: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def met(self) -> bool | None:
        """Whether the target is met; ``None`` without a target or a measurable value."""
        if self.target is None or self.value is None or math.isnan(self.value):
            return None
        return self.value >= self.target if self.higher_is_better else self.value <= self.target

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        if self.value is not None and math.isnan(self.value):
            d["value"] = None
        d["met"] = self.met
        return d
