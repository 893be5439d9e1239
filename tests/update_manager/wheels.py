"""Tiny Python packages for the tests: wheels written by hand (no build tools, no network)
and virtualenvs made without pip (the server drives them with its own pip, ``--python``)."""

from __future__ import annotations

import base64
import hashlib
import os
import subprocess
import sys
import zipfile


def _record_line(name: str, data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"{name},sha256={digest},{len(data)}"


def build_wheel(folder: str, name: str, version: str, urls: dict[str, str] | None = None,
                release_info: dict | None = None) -> str:
    """Write ``name-version-py3-none-any.whl`` into ``folder``; the package prints its version."""
    import json

    module = name.replace("-", "_")
    dist_info = f"{module}-{version}.dist-info"
    meta = f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n"
    for key, url in (urls or {}).items():
        meta += f"Project-URL: {key}, {url}\n"
    files = {
        f"{module}/__init__.py": f"VERSION = {version!r}\n".encode(),
        f"{dist_info}/METADATA": meta.encode(),
        f"{dist_info}/WHEEL": b"Wheel-Version: 1.0\nGenerator: tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
        f"{dist_info}/top_level.txt": f"{module}\n".encode(),
    }
    if release_info is not None:
        files[f"{module}/release_info"] = json.dumps(release_info).encode()
    record = [_record_line(n, d) for n, d in files.items()] + [f"{dist_info}/RECORD,,"]
    files[f"{dist_info}/RECORD"] = ("\n".join(record) + "\n").encode()
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, f"{module}-{version}-py3-none-any.whl")
    with zipfile.ZipFile(path, "w") as zf:
        for n, d in files.items():
            zf.writestr(n, d)
    return path


def make_venv(path: str) -> str:
    """A virtualenv without pip (fast); returns its python."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", path], check=True)
    return os.path.join(path, "bin", "python")


def pip_install(python: str, *args: str) -> None:
    """Install into the venv of ``python`` with this interpreter's pip, offline."""
    subprocess.run(
        [sys.executable, "-m", "pip", "--python", python, "install", "--quiet", "--disable-pip-version-check",
         "--no-index", *args],
        check=True,
    )


def installed_version(python: str, name: str) -> str | None:
    out = subprocess.run(
        [python, "-c", f"from importlib import metadata\ntry:\n print(metadata.version({name!r}))\nexcept Exception:\n print('')"],
        check=True, capture_output=True, text=True, cwd="/",  # not this checkout: its egg-info would answer
    ).stdout.strip()
    return out or None
