"""Optional built-ins are not even imported without their config section (pluginmanager.BUILTIN_SECTIONS)."""

from __future__ import annotations

import pytest

from moontwist.pluginmanager import BUILTIN_PLUGINS, BUILTIN_SECTIONS, _load


@pytest.mark.parametrize("name", sorted(BUILTIN_PLUGINS))
def test_sections_known_before_import_match_the_plugin_classes(name):
    plugin = _load(BUILTIN_PLUGINS[name])
    if not getattr(plugin, "optional", False):
        assert name not in BUILTIN_SECTIONS
        return
    section = getattr(plugin, "section", name)
    prefixes = {p.rstrip() for p in getattr(plugin, "section_prefixes", ())}
    assert set(BUILTIN_SECTIONS[name]) == {section} | prefixes
