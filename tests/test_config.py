"""moonraker.conf-compatible configuration."""

from __future__ import annotations

import json

import pytest
import pytest_twisted

from moontwist.config import Config, ConfigError
from mtclient import start_service


def write(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_typed_getters_with_limits_and_defaults(tmp_path):
    cfg = Config(str(write(tmp_path / "m.conf", """
[server]
port: 7200
ratio = 0.5
enabled: True
names:
    alpha
    beta
pairs:
    a=1
    b = two
""")))
    s = cfg.section("server")
    assert s.getint("port", 7125, minval=1, maxval=65535) == 7200
    assert s.getfloat("ratio", 1.0, above=0.0) == 0.5
    assert s.getboolean("enabled", False) is True
    assert s.getlist("names") == ["alpha", "beta"]
    assert s.getdict("pairs") == {"a": "1", "b": "two"}
    assert s.get("missing", "fallback") == "fallback"
    assert s.get("mode", "x", choices=["x", "y"]) == "x"
    assert cfg.typed()["server"]["missing"] == "fallback"
    assert cfg.warnings() == []


@pytest.mark.parametrize("value,getter,expected", [
    ("lots", "getint", "an integer"),
    ("0", "getint_limited", "an integer >= 1"),
    ("maybe", "getboolean", "a boolean"),
    ("1.5x", "getfloat", "a number"),
])
def test_bad_value_names_file_section_option_value_and_type(tmp_path, value, getter, expected):
    path = write(tmp_path / "m.conf", f"[server]\nport: {value}\n")
    s = Config(str(path)).section("server")
    with pytest.raises(ConfigError) as err:
        if getter == "getint_limited":
            s.getint("port", minval=1)
        else:
            getattr(s, getter)("port")
    msg = str(err.value)
    assert str(path) in msg and "[server]" in msg and "'port'" in msg and repr(value) in msg and expected in msg


def test_required_option_missing(tmp_path):
    s = Config(str(write(tmp_path / "m.conf", "[power plug]\n"))).section("power plug")
    with pytest.raises(ConfigError, match="option 'address' in section \\[power plug\\] is required"):
        s.get("address")


def test_include_globs_and_files_report(tmp_path):
    main = write(tmp_path / "cfg" / "moonraker.conf", "[server]\nport: 1\n[include extras/*.conf]\n")
    write(tmp_path / "cfg" / "extras" / "a.conf", "[mqtt]\naddress: localhost\n")
    write(tmp_path / "cfg" / "extras" / "b.conf", "[server]\nhost: 127.0.0.1\n")
    cfg = Config(str(main))
    assert cfg.files() == [
        {"filename": "moonraker.conf", "sections": ["server"]},
        {"filename": "extras/a.conf", "sections": ["mqtt"]},
        {"filename": "extras/b.conf", "sections": ["server"]},
    ]
    assert cfg.orig()["server"] == {"port": "1", "host": "127.0.0.1"}
    with pytest.raises(ConfigError, match="does not exist"):
        Config(str(write(tmp_path / "x.conf", "[include nothere.conf]\n")))


@pytest.mark.parametrize("kind", ["ini", "json"])
def test_secrets(tmp_path, kind):
    if kind == "ini":
        secrets = write(tmp_path / "s.ini", "[mqtt_credentials]\nusername: mqttuser\npassword: hunter2\n")
    else:
        secrets = write(tmp_path / "s.json", json.dumps({"mqtt_credentials": {"username": "mqttuser", "password": "hunter2"}}))
    cfg = Config(str(write(tmp_path / "m.conf", "[mqtt]\nusername: {secrets.mqtt_credentials.username}\npassword: {secrets.mqtt_credentials.password}\nother: {secrets.nope.nope}\n")))
    cfg.load_secrets(str(secrets))
    s = cfg.section("mqtt")
    assert s.get("username") == "mqttuser"
    assert s.get("password") == "hunter2"
    with pytest.raises(ConfigError, match="secrets"):
        s.get("other")


def test_unknown_options_and_sections_are_warnings(tmp_path):
    cfg = Config(str(write(tmp_path / "m.conf", "[server]\nport: 1\nbogus: 2\n[fake_section]\na: b\n")))
    cfg.section("server").getint("port")
    warnings = cfg.warnings()
    assert any("'bogus'" in w and "[server]" in w for w in warnings)
    assert any("[fake_section]" in w for w in warnings)
    assert len(warnings) == 2


@pytest_twisted.ensureDeferred
async def test_server_config_endpoint_and_warnings(tmp_path):
    svc = await start_service(str(tmp_path / "d"), "[server]\nhost: 127.0.0.1\nmax_upload_size: 210\nunknown_opt: 1\n[fake_section]\nx: 1\n")
    try:
        code, body = await svc.get("/server/config")
        assert code == 200
        result = body["result"]
        assert result["config"]["server"]["max_upload_size"] == 210
        assert result["config"]["server"]["port"] == 7125  # a default, typed
        assert result["config"]["server"]["enable_debug_logging"] is False
        assert result["orig"]["server"] == {"host": "127.0.0.1", "max_upload_size": "210", "unknown_opt": "1"}
        assert result["files"] == [{"filename": "moontwist.conf", "sections": ["server", "fake_section"]}]
        warnings = (await svc.get("/server/info"))[1]["result"]["warnings"]
        assert any("unknown_opt" in w for w in warnings) and any("[fake_section]" in w for w in warnings)
    finally:
        await svc.service.stopService()
