"""Smoke test of the benchmark tool itself (python -m bench), against its raw-asyncio stand-in.

No timing thresholds: only that the tool runs, stops by itself and reports sane structure.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from bench import cli  # noqa: E402
from bench.client.http import parse_response  # noqa: E402
from bench.client.ws import accept_key  # noqa: E402
from bench.result import Result  # noqa: E402
from bench.stats import percentile, summarize  # noqa: E402

LOAD_FIGURES = {
    "GET /server/info c=1": "req/s",
    "GET /server/info c=32": "req/s",
    "ws server.info sequential": "RPC/s",
    "ws server.info 100 in flight": "RPC/s",
}


@pytest.fixture
def standin():
    """The bench's stand-in server in a subprocess on a free loopback port."""
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.Popen(
        [sys.executable, "-m", "bench.standin", "--host", "127.0.0.1", "--port", "0"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        line = proc.stdout.readline().split()
        assert line and line[0] == "listening", line
        yield f"http://127.0.0.1:{line[2]}", proc.pid
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def _check(doc: dict, with_rss: bool) -> None:
    assert doc["meta"]["base_url"].startswith("http://127.0.0.1:")
    by_name = {r["name"]: r for r in doc["results"]}
    for name, unit in LOAD_FIGURES.items():
        r = by_name[name]
        assert r["suite"] == "core"
        assert r["unit"] == unit
        assert r["value"] > 0, r
        assert r["extra"]["completed"] > 0
        assert r["extra"]["errors"] == 0
        assert r["client_cpu"] is not None and r["client_cpu"] > 0
        assert r["met"] in (True, False, None)
        assert by_name[f"{name} p50"]["value"] > 0
        assert by_name[f"{name} p99"]["value"] >= by_name[f"{name} p50"]["value"]
        assert by_name[f"{name} p50"]["unit"] == "ms"
    assert by_name["GET /server/info c=32"]["target"] == 5000
    if with_rss:
        rss = [r for r in doc["results"] if r["name"].startswith("RSS")]
        assert rss and all(r["value"] > 0 and r["unit"] == "MB" for r in rss)
        assert by_name["GET /server/info c=32"]["server_cpu"] >= 0


def test_core_suite_against_external_server(standin, tmp_path, capsys):
    url, pid = standin
    out = tmp_path / "out.json"
    rc = cli.main(
        ["--base-url", url, "--pid", str(pid), "--duration", "0.4", "--warmup", "0.1",
         "--no-wrk", "-q", "--json", str(out)]
    )
    assert rc == 0
    table = capsys.readouterr().out
    for name in LOAD_FIGURES:
        assert name in table
    _check(json.loads(out.read_text()), with_rss=True)


def test_core_suite_starting_its_own_server(tmp_path):
    """The path without --base-url: the bench starts a server (here the stand-in) itself."""
    out = tmp_path / "out.json"
    rc = cli.main(["--standin", "--duration", "0.3", "--warmup", "0.1", "--no-wrk", "-q",
                   "--json", str(out)])
    assert rc == 0
    doc = json.loads(out.read_text())
    _check(doc, with_rss=True)
    assert doc["meta"]["server_pid"] > 0
    rss_start = next(r for r in doc["results"] if r["name"] == "RSS at start")
    assert rss_start["target"] == 45.0


def test_unknown_suite_is_refused(capsys):
    assert cli.main(["--suite", "nope", "--base-url", "http://127.0.0.1:9"]) == 2


def test_helpers():
    assert accept_key(b"dGhlIHNhbXBsZSBub25jZQ==") == b"s3pPLMBiTxaQ9kYGzzhZRbK+xOo="  # RFC 6455 1.3
    assert percentile([1.0, 2.0, 3.0, 4.0], 50) == 2.5
    assert summarize([])["count"] == 0
    assert Result("x", 10, "req/s", target=5).met is True
    assert Result("x", 50, "MB", target=45, higher_is_better=False).met is False
    cl = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
    assert parse_response(cl) == (200, len(cl), True)
    assert parse_response(cl[:-1]) is None
    ch = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n"
    assert parse_response(ch) == (200, len(ch), True)
    assert parse_response(ch[:-2]) is None
    close = b"HTTP/1.1 404 Not Found\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"
    assert parse_response(close) == (404, len(close), False)


@pytest.fixture
def klippy(tmp_path):
    """The Klippy simulator in its own process, standing in for a real Klippy: (socket, pid)."""
    sock, gcodes = tmp_path / "klippy.sock", tmp_path / "gcodes"
    gcodes.mkdir()
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    code = "import sys; from moontwist.sim.cli import main; sys.exit(main(sys.argv[1:]))"
    proc = subprocess.Popen(
        [sys.executable, "-c", code, "--socket", str(sock), "--gcodes", str(gcodes), "--startup-delay", "0"],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        for _ in range(200):
            if sock.exists() or proc.poll() is not None:
                break
            time.sleep(0.05)
        assert sock.exists(), "the simulator did not start"
        yield str(sock), proc.pid
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_moontwist_in_front_of_a_klippy_process(klippy, tmp_path):
    """--klippy-socket: the started moontwist uses that Klippy; klippy_cost reads its CPU."""
    sock, pid = klippy
    out = tmp_path / "out.json"
    rc = cli.main(["--klippy-socket", sock, "--klippy-pid", str(pid), "--suite", "core,klippy_cost",
                   "--duration", "0.3", "--warmup", "0.1", "--no-wrk", "-q", "--json", str(out)])
    assert rc == 0
    doc = json.loads(out.read_text())
    assert "Klippy at" in doc["meta"]["server"]
    rss = next(r for r in doc["results"] if r["name"].startswith("RSS at start"))
    assert rss["name"] == "RSS at start (real Klippy)" and rss["target"] == 45.0 and rss["value"] > 0
    cost = {r["name"]: r for r in doc["results"] if r["name"].startswith("Klippy CPU")}
    assert set(cost) == {"Klippy CPU, objects not queried", "Klippy CPU, after querying them", "Klippy CPU difference"}
    assert cost["Klippy CPU, after querying them"]["note"].endswith("objects queried")


def test_klippy_options_are_checked(capsys):
    with pytest.raises(SystemExit):
        cli.main(["--klippy-socket", "/tmp/x.sock", "--base-url", "http://127.0.0.1:9"])
    assert cli.main(["--suite", "klippy_cost", "--standin", "--duration", "0.2", "-q", "--no-wrk"]) == 1
