"""A property-based fuzz run over the OpenAPI document the server publishes (schemathesis).

The real daemon runs as a child process with ``[authorization]`` (no trusted
clients) and the simulated printer; host power actions go to the ``recording``
provider, the config file lives outside the data path (the fuzzer may delete
anything the file API reaches).  Every operation gets valid and invalid
requests, without and with the API key.  No answer may be a 5xx but 503,
none may take 5 s, and the server log
must hold no traceback.  (503 is a deliberate answer: a restart the fuzzer asked
for, a Klippy it restarted, a service this machine doesn't have.)

``MOONTWIST_FUZZ_EXAMPLES`` sets the examples per operation (default 10) and
``MOONTWIST_FUZZ_RANDOM=1`` draws new examples on every run instead of a fixed set.
"""

from __future__ import annotations

import glob
import json
import os
import subprocess
import time
import urllib.request

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from schemathesis.generation.modes import GenerationMode

from moontwist.apikey import read_api_key
from mtclient import Daemon

EXAMPLES = int(os.environ.get("MOONTWIST_FUZZ_EXAMPLES", "10"))
SLOW = 5.0
CONFIG = """\
[server]
host: 127.0.0.1

[authorization]
max_login_attempts: 2

[machine]
provider: recording

[simulator]
speed: 50
"""
# With the key these would defeat the run itself: a new key locks the fuzzer out,
# and a webcam test fetches whatever URL a fuzzed webcam was given (beyond loopback).
KEY_EXCLUDED = {"POST /access/api_key", "POST /server/webcams/test"}


@pytest.fixture
def daemon(tmp_path):
    datapath = tmp_path / "data"
    config = tmp_path / "moontwist.conf"
    config.write_text(CONFIG)
    server = Daemon(str(datapath), "--simulate", "--config", str(config))
    with open(tmp_path / "stdout.log", "wb") as out:  # a pipe nobody reads would block the daemon
        server.proc = subprocess.Popen(server.argv, env=server.env, stdout=out, stderr=subprocess.STDOUT)
    try:
        _wait_public(server.base)
        yield server
    finally:
        server.stop()


def _wait_public(base: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(base + "/access/info", timeout=1):
                return
        except OSError:
            time.sleep(0.1)
    raise TimeoutError("the daemon did not answer")


def _strategy(operation, with_key: bool):
    modes = [GenerationMode.POSITIVE, GenerationMode.NEGATIVE] if with_key else [GenerationMode.POSITIVE]
    strategies = []
    for mode in modes:
        try:
            strategies.append(operation.as_strategy(mode))
        except Exception:  # no invalid form of an operation without parameters
            continue
    return st.one_of(strategies)


def _fuzz(operation, base: str, key: str | None, problems: list[str]) -> int:
    """Send ``EXAMPLES`` generated requests to one operation; returns how many were sent."""
    headers = {"X-Api-Key": key} if key else None
    label = f"{operation.label} ({'with' if key else 'without'} key)"
    sent = 0

    @given(case=_strategy(operation, key is not None))
    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        derandomize=not os.environ.get("MOONTWIST_FUZZ_RANDOM"),
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    def run(case):
        nonlocal sent
        sent += 1
        started = time.monotonic()
        try:
            response = case.call(base_url=base, headers=headers, timeout=SLOW + 5)
        except Exception as exc:
            problems.append(f"{label}: no answer: {exc!r}")
            return
        took = time.monotonic() - started
        text = response.text[:300]
        if response.status_code >= 500 and response.status_code != 503:
            body = repr(getattr(case, "body", None))[:200]
            problems.append(f"{label}: {response.status_code} {text} for query={case.query!r} body={body}")
        if took > SLOW:
            problems.append(f"{label}: took {took:.1f}s")

    run()
    return sent


def test_fuzz_openapi_document(daemon):
    key = read_api_key(daemon.datapath)
    assert key
    with urllib.request.urlopen(daemon.base + "/server/openapi.json", timeout=5) as resp:
        document = json.loads(resp.read())
    schema = schemathesis.openapi.from_dict(document)
    problems: list[str] = []
    sent = 0
    for result in schema.get_all_operations():
        operation = result.ok()
        sent += _fuzz(operation, daemon.base, None, problems)
        if operation.label not in KEY_EXCLUDED:
            sent += _fuzz(operation, daemon.base, key, problems)
    assert sent > 200
    tracebacks = [path for path in glob.glob(os.path.join(daemon.datapath, "logs", "moontwist.log*"))
                  if "Traceback" in open(path, encoding="utf-8", errors="replace").read()]
    assert daemon.proc.poll() is None, "the daemon died"
    assert not problems, "\n".join(problems[:30])
    assert not tracebacks, f"tracebacks in {tracebacks}"
