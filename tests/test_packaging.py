"""The package as pip installs it: every module and data file is there, and the daemon runs."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

from mtclient import PYTHON, REPO, Daemon, wait_for_json


def _source_copy(dest: str) -> None:
    """The checkout's files as git sees them (no build/ leftovers that would hide a missing file)."""
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
        cwd=REPO, check=True, capture_output=True, text=True,
    ).stdout.splitlines()
    for rel in listed:
        src = os.path.join(REPO, rel)
        if rel.startswith("tests/") or not os.path.isfile(src):
            continue
        os.makedirs(os.path.dirname(os.path.join(dest, rel)), exist_ok=True)
        shutil.copy2(src, os.path.join(dest, rel))


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """moontwist built from a clean copy and installed (without dependencies) into a folder of its own."""
    source = str(tmp_path_factory.mktemp("source"))
    _source_copy(source)
    target = tmp_path_factory.mktemp("installed")
    subprocess.run(
        [PYTHON, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
         "--disable-pip-version-check", "--target", str(target), source],
        check=True, cwd=source, env={**os.environ, "PIP_NO_INDEX": "1"},
    )
    return str(target)


def test_installed_copy_runs_with_the_simulated_printer(installed, tmp_path):
    # Only the installed copy is importable: not the source tree.
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["PYTHONPATH"] = installed
    probe = subprocess.run([PYTHON, "-c", "import moontwist; print(moontwist.__file__)"],
                           cwd=str(tmp_path), env=env, capture_output=True, text=True, check=True)
    assert probe.stdout.strip().startswith(installed)
    d = Daemon(str(tmp_path / "data"), "--simulate", env=env, cwd=str(tmp_path)).start()
    try:
        info = wait_for_json(d, "/server/info", lambda r: r["result"]["klippy_state"] == "ready")["result"]
        assert info["failed_components"] == []
        assert {"klippy_apis", "file_manager", "database"} <= set(info["components"])
        # the simulator's example configs and docs were installed (its klipper_path)
        assert {"config_examples", "docs"} <= set(info["registered_directories"])
    finally:
        d.stop()


def test_console_scripts_are_declared(installed):
    entry_points = next(
        os.path.join(installed, name, "entry_points.txt")
        for name in os.listdir(installed) if name.startswith("moontwist-") and name.endswith(".dist-info")
    )
    text = open(entry_points).read()
    for script in ("moontwist =", "moontwist-sim =", "moontwist-apikey ="):
        assert script in text
    assert sys.version_info >= (3, 10)
