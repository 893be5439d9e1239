"""update_manager: GET /server/info latency while machine.update.refresh refreshes 10 git repos.

The suite makes 10 git repositories (a bare origin with 200 commits and tags, a clone two
commits behind) in a temporary folder, starts moontwist with an ``[update_manager NAME]``
section for each (system packages through the recording provider, nothing else touched),
then measures ``GET /server/info`` one request at a time while a loop keeps posting
``machine.update.refresh`` (every repo: git status, fetch, describe, log...).  The server
must keep answering: the target is p99 under 20 ms.
"""

from __future__ import annotations

import http.client
import json
import os
import shlex
import shutil
import subprocess
import tempfile
import threading
import time

from bench.client.http import build_request, http_load
from bench.context import Context, SuiteError
from bench.result import Result
from bench.server import DEFAULT_SERVER_CMD, ServerProcess, http_get
from bench.suites.core import _load_rows

__all__ = ["TARGETS", "run"]

TARGETS = {"info_p99_ms": 20.0}
REPOS = 10
COMMITS = 200
GIT_ENV = {
    **os.environ,
    "GIT_AUTHOR_NAME": "bench", "GIT_AUTHOR_EMAIL": "bench@example.invalid",
    "GIT_COMMITTER_NAME": "bench", "GIT_COMMITTER_EMAIL": "bench@example.invalid",
    "GIT_CONFIG_NOSYSTEM": "1", "GIT_CONFIG_GLOBAL": os.devnull,
}


def _git(cwd: str, *args: str) -> None:
    subprocess.run(["git", *args], cwd=cwd, env=GIT_ENV, check=True, capture_output=True)


def _make_repos(root: str) -> list[tuple[str, str]]:
    """(clone path, origin path) of ``REPOS`` repositories, each clone 2 commits behind."""
    template = os.path.join(root, "template")
    os.makedirs(template)
    _git(template, "init", "-q", "-b", "master")
    script = "".join(
        f"commit refs/heads/master\ncommitter bench <b@x> {1_700_000_000 + i} +0000\n"
        f"data {len(f'commit {i}')}\ncommit {i}\n"
        + f"M 644 inline file{i % 20}.py\ndata {len(f'x = {i}')}\nx = {i}\n\n"
        for i in range(COMMITS)
    )
    subprocess.run(["git", "fast-import", "--quiet"], cwd=template, env=GIT_ENV, input=script.encode(), check=True)
    for i in range(0, COMMITS, 50):
        _git(template, "tag", f"v0.{i // 50}.0", f"master~{COMMITS - 1 - i}")
    repos = []
    for n in range(REPOS):
        origin = os.path.join(root, f"repo{n}.git")
        clone = os.path.join(root, f"repo{n}")
        _git(root, "clone", "-q", "--bare", template, origin)
        _git(root, "clone", "-q", "file://" + origin, clone)
        _git(clone, "reset", "-q", "--hard", "HEAD~2")
        repos.append((clone, origin))
    return repos


def _config(repos: list[tuple[str, str]], missing: str) -> str:
    text = (
        "[server]\nhost: 127.0.0.1\n[machine]\nprovider: recording\n"
        f"[file_manager]\nklipper_path: {missing}\n"
        "[update_manager]\nsystem_provider: recording\n"
        f"[update_manager moonraker]\npath: {missing}\n"
    )
    for n, (clone, origin) in enumerate(repos):
        text += f"[update_manager repo{n}]\ntype: git_repo\npath: {clone}\norigin: {origin}\nis_system_service: False\n"
    return text


def _post(host: str, port: int, path: str, headers: dict[str, str], timeout: float = 120.0) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        conn.request("POST", path, body=b"{}", headers={**headers, "Content-Type": "application/json"})
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def _wait_initial_refresh(proc: ServerProcess, headers: dict[str, str], timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status, body = _post(proc.host, proc.port, "/machine/update/refresh", headers)
        if status == 200:
            info = json.loads(body)["result"]["version_info"]
            bad = [name for name in info if name.startswith("repo") and not info[name]["is_valid"]]
            if bad:
                raise SuiteError(f"repos not valid after refresh: {bad}")
            return
        time.sleep(0.2)
    raise SuiteError("the update manager's start-up refresh did not finish")


def run(ctx: Context) -> list[Result]:
    if shutil.which("git") is None:
        raise SuiteError("git is not installed")
    tmp = tempfile.mkdtemp(prefix="moontwist-bench-um-")
    try:
        ctx.log(f"  making {REPOS} git repositories of {COMMITS} commits ...")
        repos = _make_repos(tmp)
        datapath = os.path.join(tmp, "data")
        os.makedirs(os.path.join(datapath, "config"))
        with open(os.path.join(datapath, "config", "moontwist.conf"), "w") as f:
            f.write(_config(repos, os.path.join(tmp, "not-installed")))
        template = DEFAULT_SERVER_CMD.replace("{datapath}", shlex.quote(datapath)).replace(" --simulate", "")
        proc = ServerProcess(cmd_template=template)
        proc.start()
        try:
            _wait_initial_refresh(proc, ctx.headers)
            code, _ = http_get(proc.host, proc.port, "/server/info", headers=ctx.headers)
            if code != 200:
                raise SuiteError(f"GET /server/info answered {code}")
            return _measure(ctx, proc)
        finally:
            proc.stop()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _measure(ctx: Context, proc: ServerProcess) -> list[Result]:
    request = build_request(proc.host, proc.port, "/server/info", headers=ctx.headers)
    results: list[Result] = []
    ctx.log("  GET /server/info c=1, idle ...")
    lr = ctx.run(http_load(proc.host, proc.port, request, 1, ctx.warmup, ctx.duration, None))
    results += _load_rows("GET /server/info c=1, idle", lr, "req/s")
    stop = threading.Event()
    refreshes: list[float] = []
    errors: list[str] = []

    def refresh_loop() -> None:
        while not stop.is_set():
            t0 = time.perf_counter()
            status, body = _post(proc.host, proc.port, "/machine/update/refresh", ctx.headers)
            if status != 200:
                errors.append(f"{status} {body[:100]!r}")
                time.sleep(0.1)
                continue
            refreshes.append(time.perf_counter() - t0)

    ctx.log(f"  GET /server/info c=1 while refreshing {REPOS} git repos ...")
    worker = threading.Thread(target=refresh_loop, daemon=True)
    worker.start()
    try:
        lr = ctx.run(http_load(proc.host, proc.port, request, 1, ctx.warmup, ctx.duration, None))
    finally:
        stop.set()
        worker.join(120)
    rows = _load_rows(f"GET /server/info c=1, refreshing {REPOS} repos", lr, "req/s")
    rows[2].target = TARGETS["info_p99_ms"]
    rows[2].higher_is_better = False
    results += rows
    if refreshes:
        mean = sum(refreshes) / len(refreshes)
        results.append(Result(f"machine.update.refresh of {REPOS} repos", mean, "s", higher_is_better=False,
                              note=f"{len(refreshes)} refreshes" + (f"; {len(errors)} refused" if errors else "")))
    elif errors:
        raise SuiteError(f"machine.update.refresh failed: {errors[0]}")
    return results
