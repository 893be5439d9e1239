"""A Moonraker database dropped into <datapath>/database is imported once at start-up."""

from __future__ import annotations

import hashlib
import json
import os
import shutil

import pytest
import pytest_twisted

from moontwist.pluginmanager import BUILTIN_PLUGINS
from mtclient import start_service

DATA = os.path.join(os.path.dirname(os.path.dirname(__file__)), "data", "moonraker_db")
CONFIG = "[server]\nhost: 127.0.0.1\n"
# Only the server and the database: file_manager would (rightly) prune the imported
# gcode_metadata of files that aren't in this test's empty gcodes folder.
BUILTINS = {name: BUILTIN_PLUGINS[name] for name in ("server", "database", "authorization")}


@pytest.fixture(scope="module")
def expected() -> dict:
    with open(os.path.join(DATA, "expected.json"), encoding="utf-8") as fh:
        return json.load(fh)


def sha256(path: str) -> str:
    with open(path, "rb") as fh:
        return hashlib.sha256(fh.read()).hexdigest()


@pytest.fixture
def datapath(tmp_path) -> str:
    path = tmp_path / "data"
    (path / "database").mkdir(parents=True)
    shutil.copyfile(os.path.join(DATA, "moonraker-sql.db"), path / "database" / "moonraker-sql.db")
    return str(path)


def log_text(datapath: str) -> str:
    with open(os.path.join(datapath, "logs", "moontwist.log"), encoding="utf-8") as fh:
        return fh.read()


@pytest_twisted.ensureDeferred
async def test_import_through_the_api_once(datapath, expected):
    source = os.path.join(datapath, "database", "moonraker-sql.db")
    digest = sha256(source)
    namespaces = {ns: v for ns, v in expected["namespaces"].items() if ns != "database"}

    svc = await start_service(datapath, CONFIG, builtins=BUILTINS)
    try:
        ws = await svc.ws()
        listed = await ws.call("server.database.list")
        assert set(namespaces) <= set(listed["namespaces"])
        assert "database" not in listed["namespaces"]
        for namespace, items in namespaces.items():
            code, body = await svc.get(f"/server/database/item?namespace={namespace}")
            assert code == 200, namespace
            value = body["result"]["value"]
            assert value == items, namespace
            assert expected["users"]["api_key"] not in json.dumps(body), namespace
            for key in items:
                got = await ws.call(
                    "server.database.get_item", {"namespace": namespace, "key": [key]}
                )
                assert got["value"] == items[key], (namespace, key)
        # imported client data stays writable, reserved namespaces don't
        await ws.call("server.database.post_item", {"namespace": "mainsail", "key": "z", "value": 1})
        code, _ = await svc.post(
            "/server/database/item", json={"namespace": "moonraker", "key": "z", "value": 1}
        )
        assert code == 403

        history = svc.server.lookup("history_store")
        count, jobs = await history.list_jobs(limit=0, order="asc")
        assert count == expected["history"]["count"]
        assert [j["job_id"] for j in jobs] == [j["job_id_hex"] for j in expected["history"]["jobs"]]
        assert [j["filename"] for j in jobs] == [j["filename"] for j in expected["history"]["jobs"]]
        totals = await history.totals()
        assert totals["job_totals"] == expected["totals"]["job_totals"]
        assert totals["auxiliary_totals"] == expected["totals"]["auxiliary_totals"]
        ws.sendClose()
    finally:
        await svc.service.stopService()

    assert sha256(source) == digest
    beside = os.listdir(os.path.dirname(source))
    assert not [n for n in beside if n.startswith("moonraker-sql.db") and n != "moonraker-sql.db"]
    text = log_text(datapath)
    assert "Imported Moonraker database" in text
    assert f"{len(namespaces)} namespaces" in text and "6 history jobs" in text
    assert "2 users" in text

    # second start: nothing is imported again, changes made since are kept
    svc = await start_service(datapath, CONFIG, builtins=BUILTINS)
    try:
        code, body = await svc.get("/server/database/item?namespace=mainsail&key=z")
        assert code == 200 and body["result"]["value"] == 1
        count, _ = await svc.server.lookup("history_store").list_jobs(limit=0)
        assert count == expected["history"]["count"]
    finally:
        await svc.service.stopService()
    text = log_text(datapath)
    assert text.count("Imported Moonraker database") == 1
    assert "already imported; not importing again" in text
    assert sha256(source) == digest


@pytest_twisted.ensureDeferred
async def test_a_damaged_source_is_logged_and_the_server_runs(tmp_path):
    datapath = tmp_path / "data"
    (datapath / "database").mkdir(parents=True)
    (datapath / "database" / "moonraker-sql.db").write_bytes(b"garbage" * 1000)
    svc = await start_service(str(datapath), CONFIG)
    try:
        code, body = await svc.get("/server/database/list")
        assert code == 200
        assert "database" not in body["result"].get("failed_components", [])
    finally:
        await svc.service.stopService()
    assert "could not be imported" in log_text(str(datapath))


@pytest_twisted.ensureDeferred
async def test_imported_metadata_cache_is_served_by_the_file_manager(datapath, expected):
    """With every plugin: an unchanged file keeps its imported metadata (no rescan)."""
    name = "prusaslicer_cube.gcode"
    imported = expected["namespaces"]["gcode_metadata"][name]
    gcode = os.path.join(datapath, "gcodes", name)
    os.makedirs(os.path.dirname(gcode))
    shutil.copyfile(os.path.join(DATA, "..", "gcode_samples", name), gcode)
    assert os.path.getsize(gcode) == imported["size"]
    os.utime(gcode, (imported["modified"], imported["modified"]))
    svc = await start_service(datapath, CONFIG)
    try:
        code, body = await svc.get(f"/server/files/metadata?filename={name}")
        assert code == 200
        meta = body["result"]
        # job_id and print_start_time only exist in the imported record, never in a rescan
        assert (meta["job_id"], meta["print_start_time"]) == (
            imported["job_id"], imported["print_start_time"],
        )
        assert meta["uuid"] == imported["uuid"] and meta["slicer"] == imported["slicer"]
        code, body = await svc.get("/server/database/item?namespace=gcode_metadata")
        assert code == 200 and body["result"]["value"][name]["job_id"] == imported["job_id"]
    finally:
        await svc.service.stopService()
