"""bed_mesh keeps calibrated meshes as session profiles (KlipperScreen's bed mesh panel lists them)."""

from __future__ import annotations

import pytest_twisted


async def mesh(client) -> dict:
    return (await client.result("objects/query", {"objects": {"bed_mesh": None}}))["status"]["bed_mesh"]


@pytest_twisted.ensureDeferred
async def test_calibrate_saves_default_profile_that_survives_clear(sim, client):
    assert (await mesh(client))["profiles"] == {}
    await client.result("gcode/script", {"script": "G28\nBED_MESH_CALIBRATE"}, timeout=20)
    status = await mesh(client)
    assert status["profile_name"] == "default"
    profile = status["profiles"]["default"]
    assert len(profile["points"]) == 7 and len(profile["points"][0]) == 7
    assert set(profile["mesh_params"]) == {"min_x", "max_x", "min_y", "max_y", "x_count", "y_count",
                                           "mesh_x_pps", "mesh_y_pps", "algo", "tension"}
    await client.result("gcode/script", {"script": "BED_MESH_CLEAR"})
    status = await mesh(client)
    assert status["profile_name"] == "" and status["mesh_matrix"] == [[]]
    assert list(status["profiles"]) == ["default"]
    await client.result("gcode/script", {"script": "BED_MESH_PROFILE LOAD=default"})
    assert (await mesh(client))["profile_name"] == "default"
    await client.result("gcode/script", {"script": "BED_MESH_PROFILE SAVE=second"})
    assert sorted((await mesh(client))["profiles"]) == ["default", "second"]
    await client.result("gcode/script", {"script": "BED_MESH_PROFILE REMOVE=default"})
    assert list((await mesh(client))["profiles"]) == ["second"]
    reply = await client.request("gcode/script", {"script": "BED_MESH_PROFILE LOAD=nope"})
    assert "Unknown profile [nope]" in reply["error"]["message"]
