"""Per-job values other plugins add to print history (``auxiliary_data``).

A plugin registers a :class:`HistoryField` through the ``register_history_fields``
hook and calls :meth:`HistoryField.update` with each new reading (a sensor's
energy counter, a spool's weight...).  The history plugin starts tracking when a
job starts and stores the tracked value with the job when it ends, as
Moonraker's sensors do (a field whose value is None is left out of that job):

- ``basic``: the last reading during the job
- ``accumulate``: the sum of the readings
- ``average``: their mean
- ``maximum`` / ``minimum``
- ``delta``: last reading minus the reading when the job started (energy meters)
- ``collect``: the readings themselves (the last ``COLLECT_LIMIT``)

With ``exclude_paused``, readings while the job is paused are ignored (for
``delta``, the change across a pause is not counted).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = ["HistoryField", "STRATEGIES", "COLLECT_LIMIT"]

STRATEGIES = ("basic", "accumulate", "average", "maximum", "minimum", "delta", "collect")
COLLECT_LIMIT = 1000


@dataclass(eq=False)
class HistoryField:
    """One auxiliary value: ``provider`` (e.g. ``"sensor meter"``) and ``name`` identify it."""

    provider: str
    name: str
    description: str = ""
    strategy: str = "basic"
    units: str | None = None
    precision: int | None = None
    exclude_paused: bool = False
    report_total: bool = False
    report_maximum: bool = False
    _tracking: bool = field(default=False, init=False, repr=False)
    _paused: bool = field(default=False, init=False, repr=False)
    _last: Any = field(default=None, init=False, repr=False)
    _value: Any = field(default=None, init=False, repr=False)
    _count: int = field(default=0, init=False, repr=False)
    _baseline: Any = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        if self.strategy not in STRATEGIES:
            raise ValueError(f"History field {self.provider}.{self.name}: unknown strategy {self.strategy!r}")

    # called by the provider ------------------------------------------------------------

    def update(self, value: Any) -> None:
        """A new reading; counted only while a job is tracked (and not paused, if excluded)."""
        previous, self._last = self._last, value
        if not self._tracking or (self._paused and self.exclude_paused) or value is None:
            return
        strategy = self.strategy
        if strategy == "delta":
            if self._baseline is None:
                self._baseline = previous if previous is not None else value
            return
        self._count += 1
        if strategy == "basic":
            self._value = value
        elif strategy in ("accumulate", "average"):
            self._value = (self._value or 0) + value
        elif strategy == "maximum":
            self._value = value if self._value is None else max(self._value, value)
        elif strategy == "minimum":
            self._value = value if self._value is None else min(self._value, value)
        elif strategy == "collect":
            values = self._value if self._value is not None else []
            values.append(value)
            del values[:-COLLECT_LIMIT]
            self._value = values

    # called by the history plugin ---------------------------------------------------------

    def start_job(self) -> None:
        self._tracking, self._paused = True, False
        self._value, self._count = None, 0
        self._baseline = self._last if self.strategy == "delta" else None

    def pause_job(self, paused: bool) -> None:
        if paused == self._paused:
            return
        if self.strategy == "delta" and self.exclude_paused:
            if paused:  # bank the change so far
                self._value = (self._value or 0) + self._delta_now()
                self._baseline = None
            else:
                self._baseline = self._last
        self._paused = paused

    def end_job(self) -> dict[str, Any]:
        """The job's entry in ``auxiliary_data``; tracking stops."""
        value = self.value()
        self._tracking = False
        return {
            "provider": self.provider,
            "name": self.name,
            "value": value,
            "description": self.description,
            "units": self.units,
        }

    def value(self) -> Any:
        """The tracked value so far."""
        strategy = self.strategy
        if strategy == "delta":
            value = self._value or 0
            if not (self._paused and self.exclude_paused):
                value += self._delta_now()
        elif strategy == "average":
            value = self._value / self._count if self._count else None
        else:
            value = self._value
        if self.precision is not None and isinstance(value, float):
            value = round(value, self.precision)
        return value

    def _delta_now(self) -> Any:
        if self._baseline is None or self._last is None:
            return 0
        return self._last - self._baseline

    def add_to_totals(self, totals: list[dict[str, Any]], value: Any) -> None:
        """Fold a finished job's ``value`` into ``auxiliary_totals`` (when this field reports any)."""
        if not (self.report_total or self.report_maximum) or not isinstance(value, (int, float)):
            return
        entry = next((t for t in totals if t["provider"] == self.provider and t["field"] == self.name), None)
        if entry is None:
            entry = {"provider": self.provider, "field": self.name, "maximum": None, "total": None}
            totals.append(entry)
        if self.report_total:
            entry["total"] = (entry["total"] or 0) + value
        if self.report_maximum:
            entry["maximum"] = value if entry["maximum"] is None else max(entry["maximum"], value)
