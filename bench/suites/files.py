"""files: uploads (100 MB, 1 GB) with RSS growth, server.files.list/get_directory, background metadata rate.
"""

from __future__ import annotations

import http.client
import json
import os
import shutil
import statistics
import threading
import time
from pathlib import Path

from bench.context import Context, SuiteError
from bench.result import Result
from bench.server import http_get

__all__ = ["TARGETS", "run"]

TARGETS = {
    "upload_mb_s": 250.0,  # MB/s (10^6 bytes)
    "upload_rss_mb": 10.0,  # RSS growth, MB, at most
    "list_ms": 100.0,
    "dir_ms": 50.0,
    "meta_files_s": 100.0,
    "sliced_s": 0.3,
}
MB = 1e6
BOUNDARY = "----moontwistBench"
SAMPLES = Path(__file__).resolve().parents[2] / "tests" / "data" / "gcode_samples"


def _get_json(ctx: Context, path: str) -> dict:
    status, body = http_get(ctx.host, ctx.port, path, headers=ctx.headers, timeout=30)
    if status != 200:
        raise SuiteError(f"GET {path} answered HTTP {status}: {body[:200]!r}")
    return json.loads(body)["result"]


def _upload(ctx: Context, name: str, size: int, chunk: bytes, head: bytes = b"", tail: bytes = b"") -> tuple[float, dict]:
    """Stream a multipart upload of ``size`` bytes; returns (seconds, answer)."""
    pre = (
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; filename="{name}"\r\n'
        "Content-Type: application/octet-stream\r\n\r\n"
    ).encode()
    post = f"\r\n--{BOUNDARY}--\r\n".encode()
    conn = http.client.HTTPConnection(ctx.host, ctx.port, timeout=120)
    t0 = time.perf_counter()
    conn.putrequest("POST", "/server/files/upload")
    conn.putheader("Content-Type", f"multipart/form-data; boundary={BOUNDARY}")
    conn.putheader("Content-Length", str(len(pre) + size + len(post)))
    for k, v in ctx.headers.items():
        conn.putheader(k, v)
    conn.endheaders()
    conn.send(pre + head)
    left = size - len(head) - len(tail)
    while left > 0:
        piece = chunk if left >= len(chunk) else chunk[:left]
        conn.send(piece)
        left -= len(piece)
    conn.send(tail + post)
    resp = conn.getresponse()
    body = resp.read()
    elapsed = time.perf_counter() - t0
    conn.close()
    if resp.status != 201:
        raise SuiteError(f"upload of {name} answered HTTP {resp.status}: {body[:200]!r}")
    return elapsed, json.loads(body)


def _with_peak_rss(ctx: Context, fn):  # type: ignore[no-untyped-def]
    server = ctx.server
    if server is None:
        return fn(), None, None
    base = server.rss() or 0
    peak = [base]
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            peak[0] = max(peak[0], server.rss() or 0)
            time.sleep(0.02)

    t = threading.Thread(target=sample, daemon=True)
    t.start()
    try:
        out = fn()
    finally:
        stop.set()
        t.join()
    return out, base, peak[0]


def _timed(fn, n: int = 15) -> float:  # type: ignore[no-untyped-def]
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1e3


def _wait_quiet(ctx: Context, seconds: float = 1.0) -> None:
    time.sleep(seconds)


def _gcodes(ctx: Context) -> Path:
    """The gcodes root now (it moves to Klippy's virtual_sdcard path once Klippy is ready)."""
    roots = {r["name"]: r for r in _get_json(ctx, "/server/files/roots")}
    if "gcodes" not in roots:
        raise SuiteError("no gcodes root (is the file_manager plugin loaded?)")
    return Path(roots["gcodes"]["path"])


def run(ctx: Context) -> list[Result]:
    results: list[Result] = []
    time.sleep(2.0)  # let Klippy (or the simulator) become ready and settle the gcodes root
    gcodes = _gcodes(ctx)
    ctx.log(f"  gcodes root: {gcodes}")
    chunk = os.urandom(1 << 20)

    for label, size in (("100 MB", 100 * 1000 * 1000), ("1 GB", 1000 * 1000 * 1000)):
        ctx.log(f"  upload {label} ...")
        (elapsed, _), base, peak = _with_peak_rss(ctx, lambda size=size: _upload(ctx, f"bench_{size}.bin", size, chunk))
        growth = (peak - base) / MB if base is not None else float("nan")
        results.append(Result(f"upload {label}", size / MB / elapsed, "MB/s", target=TARGETS["upload_mb_s"]))
        results.append(Result(f"upload {label} RSS growth", growth, "MB", target=TARGETS["upload_rss_mb"], higher_is_better=False))
        (gcodes / f"bench_{size}.bin").unlink(missing_ok=True)

    ctx.log("  server.files.list over 5,000 files ...")
    tree = gcodes / "bench_list"
    for d in range(50):
        folder = tree / f"d{d // 10}" / f"e{d}"
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(100):
            (folder / f"f{i}.gcode").write_bytes(b"G1 X1\n")
    _wait_quiet(ctx, 3.0)
    count = len(_get_json(ctx, "/server/files/list?root=gcodes"))
    ms = _timed(lambda: _get_json(ctx, "/server/files/list?root=gcodes"))
    results.append(Result("server.files.list 5,000 files", ms, "ms", target=TARGETS["list_ms"], higher_is_better=False, note=f"{count} files"))

    ctx.log("  get_directory of 1,000 files ...")
    gcodes = _gcodes(ctx)
    flat = gcodes / "bench_dir"
    flat.mkdir(exist_ok=True)
    for i in range(1000):
        (flat / f"g{i}.gcode").write_bytes(b"G1 X1\n")
    _wait_quiet(ctx, 2.0)
    ms = _timed(lambda: _get_json(ctx, "/server/files/directory?path=gcodes/bench_dir&extended=true"))
    results.append(Result("get_directory 1,000 files", ms, "ms", target=TARGETS["dir_ms"], higher_is_better=False))
    shutil.rmtree(tree)
    shutil.rmtree(flat)
    _wait_quiet(ctx, 2.0)

    ctx.log("  background metadata of 500 external files ...")
    meta_dir = gcodes / "bench_meta"
    meta_dir.mkdir(exist_ok=True)
    samples = sorted(p for p in SAMPLES.glob("*.gcode"))
    if not samples:
        raise SuiteError(f"no sample G-code in {SAMPLES}")
    n = 500
    t0 = time.perf_counter()
    for i in range(n):
        shutil.copyfile(samples[i % len(samples)], meta_dir / f"m{i}.gcode")
    done = 0
    while time.perf_counter() - t0 < 60:
        files = _get_json(ctx, "/server/files/directory?path=gcodes/bench_meta&extended=true")["files"]
        done = sum(1 for f in files if "slicer" in f)
        if done >= n:
            break
        time.sleep(0.05)
    elapsed = time.perf_counter() - t0
    results.append(Result("background metadata", done / elapsed, "files/s", target=TARGETS["meta_files_s"], note=f"{done}/{n} in {elapsed:.2f}s"))
    time.sleep(0.5)
    shutil.rmtree(meta_dir, ignore_errors=True)

    ctx.log("  50 MB sliced upload with metadata ...")
    text = (SAMPLES / "synthetic_orcaslicer_cube.gcode").read_bytes()
    head, tail = text[: len(text) // 2], text[len(text) // 2 :]
    filler = b"G1 X10 Y10 E0.1\n" * (65536 // 16)
    size = 50 * 1000 * 1000

    def sliced() -> tuple[float, dict]:
        t0 = time.perf_counter()
        _upload(ctx, "bench_sliced.gcode", size, filler, head, tail)
        meta = _get_json(ctx, "/server/files/metadata?filename=bench_sliced.gcode")
        return time.perf_counter() - t0, meta

    (elapsed, meta), base, peak = _with_peak_rss(ctx, sliced)
    note = "" if meta.get("slicer") == "OrcaSlicer" and meta.get("thumbnails") else "metadata incomplete"
    results.append(Result("50 MB sliced upload + metadata", elapsed, "s", target=TARGETS["sliced_s"], higher_is_better=False, note=note))
    if base is not None:
        results.append(Result("sliced upload + metadata RSS growth", (peak - base) / MB, "MB", higher_is_better=False))
    (gcodes / "bench_sliced.gcode").unlink(missing_ok=True)
    return results
