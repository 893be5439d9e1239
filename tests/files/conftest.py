"""A running service with the file manager (only the server and file_manager plugins)."""

from __future__ import annotations

import os
import shutil

import pytest_twisted
from files.upload_client import BUILTINS, SAMPLES

from mtclient import start_service


@pytest_twisted.async_yield_fixture
async def fm(tmp_path):
    """A service with only the server and file_manager plugins; gcodes holds the samples."""
    data = tmp_path / "data"
    gcodes = data / "gcodes"
    gcodes.mkdir(parents=True)
    for name in os.listdir(SAMPLES):
        if name.endswith(".gcode"):
            shutil.copy(os.path.join(SAMPLES, name), gcodes / name)
    svc = await start_service(str(data), "[server]\nhost: 127.0.0.1\nmax_upload_size: 1\n", builtins=BUILTINS)
    yield svc
    await svc.service.stopService()
