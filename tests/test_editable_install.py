"""``pip install -e .`` (how contributors install) gives a working ``twistd moontwist``.

setuptools' default editable finder maps packages but doesn't put
``twisted/plugins`` on ``twisted.plugins.__path__``, so Twisted's plugin
discovery never saw moontwist ("Unknown command: moontwist").
"""

from __future__ import annotations

import os
import site
import subprocess

from test_packaging import _source_copy

from mtclient import PYTHON, Daemon, wait_for_json


def test_editable_install_runs_twistd_moontwist(tmp_path):
    source = tmp_path / "source"
    _source_copy(str(source))
    venv = tmp_path / "venv"
    subprocess.run([PYTHON, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = str(venv / "bin" / "python")
    purelib = subprocess.run(
        [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True, capture_output=True, text=True,
    ).stdout.strip()
    # moontwist's dependencies come from the test environment; moontwist itself only from the install
    with open(os.path.join(purelib, "test-deps.pth"), "w") as f:
        f.write("\n".join(site.getsitepackages()) + "\n")
    subprocess.run(
        [PYTHON, "-m", "pip", "--python", python, "install", "--quiet", "--no-deps", "--no-build-isolation",
         "--disable-pip-version-check", "-e", str(source)],
        check=True, cwd=str(source), env={**os.environ, "PIP_NO_INDEX": "1"},
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    listed = subprocess.run(
        [python, "-c", "import sys; from twisted.scripts.twistd import run; sys.argv = ['twistd', '--help']; run()"],
        cwd=str(tmp_path), env=env, capture_output=True, text=True,
    )
    assert "moontwist" in listed.stdout, listed.stdout + listed.stderr
    probe = subprocess.run([python, "-c", "import moontwist; print(moontwist.__file__)"],
                           cwd=str(tmp_path), env=env, capture_output=True, text=True, check=True)
    assert probe.stdout.strip() == str(source / "moontwist" / "__init__.py")
    d = Daemon(str(tmp_path / "data"), "--simulate", env=env, cwd=str(tmp_path))
    d.argv[0] = python
    d.start()
    try:
        info = wait_for_json(d, "/server/info", lambda r: r["result"]["klippy_state"] == "ready")["result"]
        assert info["failed_components"] == []
    finally:
        d.stop()
