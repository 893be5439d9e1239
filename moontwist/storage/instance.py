"""The installation's id, kept where Moonraker keeps it: ``<data path>/.moonraker.uuid``.

Moonraker stores the same id as ``instance_id`` in its ``moonraker`` namespace
and derives the uid of each configured webcam from it.
"""

from __future__ import annotations

import os
import uuid

__all__ = ["instance_uuid", "UUID_FILE"]

UUID_FILE = ".moonraker.uuid"


def instance_uuid(datapath: str) -> str:
    """The id (32 hex digits) from the data path's uuid file; made (atomically) when missing or unreadable."""
    path = os.path.join(datapath, UUID_FILE)
    try:
        with open(path, encoding="utf-8") as f:
            return uuid.UUID(f.read().strip()).hex
    except (OSError, ValueError):
        pass
    value = uuid.uuid4().hex
    temp = f"{path}.{os.getpid()}.tmp"
    with open(temp, "w", encoding="utf-8") as f:
        f.write(value)
    os.replace(temp, path)
    return value
