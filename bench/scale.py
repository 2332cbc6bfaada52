"""Scale and sustained ingest: the agent daemon polling a farm of simulated devices into MariaDB.

1. The issue's load: 500 devices x 20 float32 points every second, one port per device.
2. Then more: devices x points stepped up until a step is not sustained (a missed cycle, fewer
   points taken than offered, or the written rows falling behind the polled ones).
3. End to end at each sustained step: rows/s that reached MariaDB against PyMySQL
   ``executemany`` and ``LOAD DATA LOCAL INFILE`` of the same rows, measured right after on the
   same table of the same server.
4. Ways of running the agent, each stepped up to its ceiling: ``one process`` (the writer on
   a thread, ``workers: 1``: the agent as it was, the baseline), ``auto`` (the defaults: from
   20,000 points/s a writer process and a polling process per core), and both with
   ``central.url: null://`` (the agent alone: no database behind the writer).
5. Issue #13's farm: 400 devices x 200 float32 points (80,000 points/s), no limits, one process
   and auto.

The farm, the agent and MariaDB share the machine's cores, as on a small gateway box.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from bench.ingest import executemany_rate, load_data_rate, truncate
from bench.load import connect, database_of, run_load, scratch_database

TITLE = "Scale: agent daemon, device farm -> MariaDB, 1 s interval"
COLUMNS = ["mode", "devices x points", "offered/s", "taken/s", "written/s", "missed", "lag p50 ms", "lag p99 ms",
           "agent CPU %", "RSS MB", "farm CPU %", "MariaDB CPU %", "vs executemany", "vs LOAD DATA", "sustained"]
DEFAULT_SECONDS = 60.0
#: (devices, points per device); the first is the issue's target load
STEPS = [(500, 20), (500, 40), (1000, 40), (1000, 60), (1000, 80), (1000, 100)]
#: the null-central modes step further (the machine's speed varies by 2x between days: start low)
NULL_STEPS = {"one process, null central": [(500, 40), (1000, 40), (1000, 60), (1000, 80), (1000, 100),
                                             (1000, 120)],
              "auto, null central": [(500, 40), (1000, 40), (1000, 60), (1000, 80), (1000, 120), (1000, 160),
                                     (1000, 200)]}
#: issue #13's farm: 400 devices x 200 float32 points, no limits, into MariaDB
FARM = (400, 200)
BASELINE_ROWS = 200_000


def sustained(r: dict[str, Any]) -> bool:
    """No missed cycle, every offered point taken, and the writer keeping pace (packs land in
    bursts, so within 5 % over the window and less than 3 s of readings waiting at its end)."""
    return (r["missed"] == 0 and r["points_per_s"] >= 0.98 * r["offered_points_per_s"]
            and r["rows_written_per_s"] >= 0.95 * r["points_per_s"] and r["backlog_end"] < 3 * r["points_per_s"])


def baselines(db_url: str, tmp: Path) -> tuple[float, float]:
    """(executemany rows/s, LOAD DATA rows/s) of the agent's own stored rows, re-inserted."""
    db = database_of(db_url)
    conn = connect(db)
    with conn.cursor() as cur:
        cur.execute("SELECT device_id, point, ts, value, value_text, quality FROM readings LIMIT %s",
                    (BASELINE_ROWS,))
        rows = list(cur.fetchall())
    conn.close()
    truncate(db)
    many = executemany_rate(db, rows)
    truncate(db)
    load = load_data_rate(db, rows, tmp)
    return many, load


#: mode -> (central settings, top-level settings)
MODES: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
    "one process": ({"writer": "thread"}, {"workers": 1}),
    "auto": ({}, {}),
    # polled, decoded, checked, buffered and taken by the writer; no database behind it
    "one process, null central": ({"writer": "thread", "url": "null://"}, {"workers": 1}),
    "auto, null central": ({"url": "null://"}, {}),
}


def run(seconds: float = DEFAULT_SECONDS, steps: list[tuple[int, int]] | None = None,
        modes: list[str] | None = None) -> dict[str, Any]:
    """For each mode (all by default), step the load up until a step is not sustained; figures of every step."""
    unknown = sorted(set(modes or ()) - set(MODES))
    if unknown:
        raise SystemExit(f"unknown mode {', '.join(unknown)} (choose from {', '.join(MODES)})")
    results: list[dict[str, Any]] = []
    ceilings = {}
    for mode in modes or MODES:
        figures = _steps(mode, seconds, steps or NULL_STEPS.get(mode, STEPS))
        results += figures
        best = max((x for x in figures if x["sustained"] == "yes"), key=lambda x: x["written/s"], default=None)
        ceilings[mode] = best and {"load": best["devices x points"], "written/s": best["written/s"]}
    if not steps and not modes:
        for mode in ("one process", "auto"):
            results += _steps(mode, seconds, [FARM], limits=False)
    return {"window_s": seconds, "ceilings": ceilings, "results": results}


def _steps(mode: str, seconds: float, steps: list[tuple[int, int]], limits: bool = True) -> list[dict[str, Any]]:
    central, top = MODES[mode]
    results = []
    for devices, points in steps:
        with scratch_database() as url, tempfile.TemporaryDirectory() as tmp:
            r = run_load(devices, points, 1.0, seconds, url, Path(tmp), extra_central=central, extra=top,
                         limits=limits)
            ok = sustained(r)
            many, load = baselines(url, Path(tmp)) if ok and "url" not in central else (0.0, 0.0)
        results.append({
            "mode": mode if limits else f"{mode}, no limits",
            "devices x points": f"{devices} x {points}", "offered/s": r["offered_points_per_s"],
            "taken/s": r["points_per_s"], "written/s": r["rows_written_per_s"], "missed": r["missed"],
            "lag p50 ms": r["lag_p50_ms"], "lag p99 ms": r["lag_p99_ms"], "agent CPU %": r["cpu_percent"],
            "RSS MB": r["rss_peak_mb"], "farm CPU %": r["farm_cpu_percent"],
            "MariaDB CPU %": r["mariadb_cpu_percent"],
            "vs executemany": r["rows_written_per_s"] / many if many else None,
            "vs LOAD DATA": r["rows_written_per_s"] / load if load else None,
            "sustained": "yes" if ok else "no", "executemany/s": many, "load_data/s": load, "raw": r})
        if not ok:
            break
    return results
