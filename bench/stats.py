"""Small statistics helpers: percentiles over latency samples."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

__all__ = ["percentile", "percentiles", "summarize"]


def percentile(sorted_values: Sequence[float], p: float) -> float:
    """The ``p``-th percentile (0..100) of already sorted values, linearly interpolated.

    Returns ``nan`` for an empty sequence.
    """
    n = len(sorted_values)
    if n == 0:
        return math.nan
    if not 0.0 <= p <= 100.0:
        raise ValueError(f"percentile out of range: {p}")
    if n == 1:
        return float(sorted_values[0])
    rank = (n - 1) * p / 100.0
    lo = math.floor(rank)
    hi = min(lo + 1, n - 1)
    frac = rank - lo
    return float(sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * frac)


def percentiles(values: Iterable[float], ps: Iterable[float]) -> dict[float, float]:
    """Several percentiles of unsorted ``values`` (sorted once)."""
    data = sorted(values)
    return {p: percentile(data, p) for p in ps}


def summarize(values: Iterable[float]) -> dict[str, float]:
    """count, min, mean, p50, p90, p99, max of ``values``."""
    data = sorted(values)
    n = len(data)
    if n == 0:
        nan = math.nan
        return {"count": 0, "min": nan, "mean": nan, "p50": nan, "p90": nan, "p99": nan, "max": nan}
    return {
        "count": n,
        "min": float(data[0]),
        "mean": math.fsum(data) / n,
        "p50": percentile(data, 50),
        "p90": percentile(data, 90),
        "p99": percentile(data, 99),
        "max": float(data[-1]),
    }
