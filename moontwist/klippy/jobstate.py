"""Print job transitions from ``print_stats`` updates, including prints that ran between two updates.

Klippy reports printer objects every 250 ms.  A short print (or one that
fails on its first move) can go ``standby -> complete`` or ``complete ->
complete`` within one report, so a listener watching only ``state`` never
sees it start.  :func:`job_transitions` turns each update into the state
changes a listener needs, inserting the ``printing`` that was missed.
"""

from __future__ import annotations

from typing import Any

__all__ = ["IDLE_STATES", "job_transitions"]

# no print running: a new print must pass through "printing" to leave these
IDLE_STATES = frozenset({"standby", "complete", "cancelled", "error"})


def job_transitions(prev: dict[str, Any], changed: dict[str, Any], expected: bool = False) -> list[tuple[str, str]]:
    """``(old, new)`` job state changes for one ``print_stats`` update.

    ``prev`` is print_stats before the update, ``changed`` the fields it
    changed.  ``expected`` says moontwist has just started a print itself,
    so any change while finished is that print.  A new print is recognised
    by a changed filename, a total duration that went back, or (from a
    finished state) any new duration; it yields ``(old, "printing")`` (or
    ``(old, "standby"), ("standby", "printing")`` when it replaced a running
    print) and then ``("printing", new)`` when it is no longer printing.
    """
    old = prev.get("state") or "standby"
    new = changed.get("state", old)
    if new == "standby":
        return [(old, new)] if new != old else []
    filename_changed = "filename" in changed and changed["filename"] != prev.get("filename")
    duration_reset = (changed.get("total_duration") is not None
                      and changed["total_duration"] < (prev.get("total_duration") or 0.0))
    if old in IDLE_STATES:
        durations_changed = any(changed.get(k) != prev.get(k) for k in ("total_duration", "print_duration") if k in changed)
        rerun = old == new and (filename_changed or durations_changed or (expected and bool(changed)))
        new_print = old != new or rerun
    else:
        new_print = filename_changed or duration_reset
    if not new_print:
        return [(old, new)] if new != old else []
    # a print that replaced a running one: the old one ended unseen
    steps = [(old, "printing")] if old in IDLE_STATES else [(old, "standby"), ("standby", "printing")]
    if new != "printing":
        steps.append(("printing", new))
    return steps
