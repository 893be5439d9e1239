"""Version strings and system-dependency files, as the update manager reads them."""

from __future__ import annotations

from moontwist.plugins.update_manager.dependencies import (
    DistroInfo,
    packages_from_install_script,
    packages_from_json,
)
from moontwist.plugins.update_manager.versions import GitVersion, PyVersion


def test_git_versions():
    v = GitVersion("v0.12.0-45-gabcdef12-dirty")
    assert (v.short, v.tag, v.count, v.hash, v.dirty, v.is_final) == ("v0.12.0-45", "v0.12.0", 45, "abcdef12", True, True)
    assert GitVersion("v0.1.0").short == "v0.1.0-0"  # on the tag itself
    assert GitVersion("v1.0.0-rc2-3-g12345678").is_final is False
    assert GitVersion("v1.0.0-alpha1").is_alpha and not GitVersion("v1.0.0-beta1").is_alpha
    assert GitVersion("abcdef12-dirty").valid is False and GitVersion("abcdef12-dirty").dirty
    assert GitVersion("?").short == "?"
    assert GitVersion("v1.0.0-rc1") < GitVersion("v1.0.0") < GitVersion("v1.0.0-1") < GitVersion("v1.1.0-0")
    assert GitVersion("v0.2.0").previous_tag() == "v0.1.0"


def test_python_versions():
    assert PyVersion("1.2.0").short == "1.2.0"
    assert PyVersion("v0.9.0.dev3").short == "v0.9.0-3"
    assert PyVersion("1.0rc1").tag == "1.0rc1"
    assert PyVersion("1.0") < PyVersion("1.1")
    assert PyVersion("nope").short == "?"


def test_system_dependencies():
    deps = {
        "debian": ["python3-dev", "libgpiod; distro_version >= '12'", "old-pkg; distro_version < '11'",
                   "pi-only; vendor == 'raspberry-pi' or distro_id == 'raspbian'", "bad; wat == 1", ""],
        "fedora": ["python3-devel"],
    }
    bookworm = DistroInfo("raspbian", ["debian"], "12")
    assert packages_from_json(deps, bookworm) == ["python3-dev", "libgpiod", "pi-only"]
    assert packages_from_json(deps, DistroInfo("debian", [], "10")) == ["python3-dev", "old-pkg"]
    assert packages_from_json(deps, DistroInfo("fedora", [], "40")) == ["python3-devel"]
    assert packages_from_json(deps, DistroInfo("arch", [], "")) == []
    assert packages_from_json(["not", "an", "object"], bookworm) == []
    script = 'PKGLIST="python3-virtualenv python3-dev"\nPKGLIST="${PKGLIST} libffi-dev"\necho done\n'
    assert packages_from_install_script(script) == ["python3-virtualenv", "python3-dev", "libffi-dev"]
