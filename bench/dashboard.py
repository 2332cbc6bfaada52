"""The dashboard in headless Chromium over MariaDB: time to first chart and to interactive, payloads.

Pages measured, each on a fresh page load (median and max of ``repeats``):
- Power, 30 days of a meter (11 points every 10 s: 2.9 million readings): hourly rollups.
- Power, 24 hours of the same meter: 1-minute rollups.
- Signals, a 100,000-point raw series (a 5 Hz point over 6 hours, the API's raw cap).

Baseline, same run: the same API requests fetched by Python (urllib, 6 at a time like the browser),
with no browser, no JSON parsing in JavaScript, no drawing: "vs baseline" is what the browser adds.
"""

from __future__ import annotations

import statistics
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Engine, insert

from agent.api.app import create_app
from agent.central import schema
from agent.central.engine import make_engine
from agent.central.writer import CentralWriter
from agent.records import DeviceInfo, PointInfo
from agent.settings import CentralConfig
from bench.load import scratch_database
from tests.infra.api_server import TOKEN, serve
from tests.infra.browser import chromium, wait_for
from tests.infra.dashboard_data import seed

TITLE = "Dashboard in headless Chromium (MariaDB, API on loopback)"
COLUMNS = ["what", "figure", "unit", "baseline", "vs baseline", "max", "note"]
#: a 5 Hz point's 6 hours: 108,000 readings, of which the page gets the API's newest 100,000
RAW_READINGS = 6 * 3600 * 5
#: the browser's connections per host (HTTP/1.1): the baseline fetches as many at once
PARALLEL = 6

PAGES = [
    ("Power, 30 days of a meter (1h rollups)", "power?meter=gw-north/meter-01&range=30d"),
    ("Power, 24 hours of a meter (1m rollups)", "power?meter=gw-north/meter-01&range=24h"),
    ("Signals, 100,000-point raw series", "signals?sel=gw-north/fast-01/vibration&range=6h"),
]

#: the page's API requests and their sizes, from the browser's resource timing
RESOURCES = """return performance.getEntriesByType('resource').filter(e => e.name.includes('/api/'))
  .map(e => ({url: e.name, bytes: e.decodedBodySize, transfer: e.transferSize}))"""


def run(seconds: float = 3.0, days: int = 30, repeats: int = 5, step_s: float = 10,
        raw_points: int = RAW_READINGS) -> dict[str, Any]:
    """``days`` of a meter every ``step_s`` and a raw series of ``raw_points``, then each page
    ``repeats`` times (``seconds`` is unused: the figures are page loads, not windows)."""
    results: list[dict[str, Any]] = []
    now = datetime.now(UTC).replace(minute=0, second=0, microsecond=0, tzinfo=None)  # naive UTC, as stored
    with scratch_database() as url:
        engine = make_engine(CentralConfig(url=url))
        try:
            started = time.perf_counter()
            seeded = seed(engine, now, days=days, step_s=step_s)
            _raw_series(engine, now, raw_points)
            load_s = time.perf_counter() - started
            with serve(create_app(engine, TOKEN, clock=lambda: now)) as api, chromium() as driver:
                for what, page in PAGES:
                    results.append(_measure(driver, api.base, what, page, repeats))
        finally:
            engine.dispose()
    results.append({"what": "seeding (readings, rollups)", "figure": load_s, "unit": "s",
                    "note": f"{seeded.meter_rows * 11 + raw_points:,} readings"})
    return {"days": days, "repeats": repeats, "results": results}


def _raw_series(engine: Engine, now: datetime, count: int = RAW_READINGS) -> None:
    """``count`` readings of a point over the last 6 hours, evenly spaced."""
    pk = CentralWriter(engine, "gw-north").sync_devices(
        [DeviceInfo("fast-01", "Vibration probe", "sensor", points=(PointInfo("vibration", unit="mm/s"),))])["fast-01"]
    every = 6 * 3600 / count
    rows = [{"device_id": pk, "point": "vibration", "ts": now - timedelta(seconds=(count - i) * every),
             "value": 2.0 + (i % 97) / 50, "quality": "good"} for i in range(count)]
    with engine.begin() as conn:
        for i in range(0, len(rows), 20_000):
            conn.execute(insert(schema.readings), rows[i:i + 20_000])


def _measure(driver: Any, base: str, what: str, page: str, repeats: int) -> dict[str, Any]:
    first, interactive, fetched = [], [], []
    resources: list[dict[str, Any]] = []
    for _ in range(repeats):
        driver.get("about:blank")
        driver.get(f"{base}/dashboard/#/{page}")
        wait_for(driver, lambda d: d.execute_script("return window.dash && window.dash.interactiveMs"), 60,
                 f"{what} drawn")
        chart_ms, done_ms = driver.execute_script("return [dash.firstChartMs, dash.interactiveMs]")
        first.append(chart_ms)
        interactive.append(done_ms)
        resources = driver.execute_script(RESOURCES)
        fetched.append(_fetch_all([r["url"] for r in resources]))
    baseline = statistics.median(fetched)
    payload = sum(r["bytes"] for r in resources)
    wire = sum(r["transfer"] for r in resources)
    note = f"{len(resources)} API requests, {payload / 1e6:.2f} MB JSON ({wire / 1e6:.2f} MB on the wire)"
    return {"what": what, "figure": statistics.median(first), "unit": "ms to first chart",
            "baseline": baseline, "vs baseline": statistics.median(first) / baseline, "max": max(first),
            "interactive_ms": statistics.median(interactive), "payload_bytes": payload,
            "note": f"interactive {statistics.median(interactive):.0f} ms (max {max(interactive):.0f}); {note}"}


def _fetch_all(urls: list[str]) -> float:
    """Milliseconds to fetch every URL, ``PARALLEL`` at a time, bodies read in full."""
    def one(url: str) -> int:
        with urllib.request.urlopen(url, timeout=60) as r:
            return len(r.read())

    started = time.perf_counter()
    with ThreadPoolExecutor(PARALLEL) as pool:
        list(pool.map(one, urls))
    return (time.perf_counter() - started) * 1000
