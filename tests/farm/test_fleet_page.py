"""The fleet page at the farm port's ``/``, in a real headless Chromium (Debian's chromium + chromedriver)."""

from __future__ import annotations

import os
import shutil
import time

import pytest
import pytest_twisted
from farm.farming import free_ports, start_farm
from twisted.internet.threads import deferToThread

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"


def _browser():
    if not (os.path.exists(CHROMIUM) and os.path.exists(CHROMEDRIVER)):
        pytest.fail("the fleet page test needs Debian's chromium and chromium-driver (tests/peers.sh, run by tox, installs them)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage"):
        options.add_argument(flag)
    return webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)


# Read in one script run: the page re-renders its rows on every event.
READ_ROWS = """
const out = {};
for (const row of document.querySelectorAll('#printers tr')) {
  const cell = (name) => row.querySelector('.' + name).textContent;
  out[row.dataset.printer] = {klippy: cell('klippy'), job: cell('job'), file: cell('file'), temps: cell('temps')};
}
return out;
"""


def _rows(driver) -> dict[str, dict[str, str]]:
    return driver.execute_script(READ_ROWS)


def _wait(driver, predicate, timeout: float = 20.0):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = _rows(driver)
        if predicate(last):
            return last
        time.sleep(0.2)
    raise AssertionError(f"the page never showed it: {last}")


@pytest.mark.timeout(180)
@pytest_twisted.ensureDeferred
async def test_fleet_page_shows_every_printer_live(tmp_path):
    base = free_ports(3)
    farm = await start_farm(
        "--simulate-farm", "2", "--datapath", str(tmp_path / "farm"), "--port", str(base + 1),
        "--farm-port", str(base), "--sim-speed", "20",
    )
    driver = await deferToThread(_browser)
    try:
        await deferToThread(driver.get, f"http://127.0.0.1:{base}/")
        rows = await deferToThread(
            _wait, driver, lambda r: set(r) == {"printer-01", "printer-02"} and "extruder" in r["printer-02"]["temps"]
        )
        assert all(row["klippy"] == "ready" and row["job"] == "standby" for row in rows.values())
        # a change on one printer reaches the page without reloading it
        await farm.running("printer-02").post("/printer/gcode/script?script=M104 S215")
        rows = await deferToThread(_wait, driver, lambda r: "/ 215" in r["printer-02"]["temps"])
        assert "/ 215" not in rows["printer-01"]["temps"]
    finally:
        await deferToThread(driver.quit)
        await farm.stop()
