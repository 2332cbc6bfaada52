"""The poll scheduler's own cost: CPU per fired poll, the agent's scheduler vs bare loop timers.

Baseline: one ``loop.call_at`` timer per device re-arming itself every interval and doing nothing
else, the least an event loop can do to fire N devices. Measured: ``PollScheduler`` firing the same
devices, each poll a coroutine that returns at once, so what is timed is the scheduling alone
(wake-ups, timers, tasks). Both in one process, one after the other, same run.
"""

from __future__ import annotations

import asyncio
import resource
import time
from typing import Any

from agent.pipeline.scheduler import PollScheduler

DEVICES = (500, 2000)
INTERVAL = 1.0
#: first cycles not measured (every device has fired once); shorter for short windows (the tests' smoke run)
WARM_UP = 2.0


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def _measure(fired: list[float], seconds: float) -> dict[str, float]:
    await asyncio.sleep(min(WARM_UP, max(INTERVAL, seconds)))
    fired.clear()
    cpu, wall = _cpu(), time.perf_counter()
    await asyncio.sleep(seconds)
    cpu, wall = _cpu() - cpu, time.perf_counter() - wall
    lags = sorted(fired)
    count = max(1, len(lags))
    return {"polls/s": len(lags) / wall, "CPU %": 100 * cpu / wall, "µs CPU per poll": 1e6 * cpu / count,
            "lag p50 ms": 1e3 * lags[count // 2] if lags else 0.0,
            "lag p99 ms": 1e3 * lags[min(count - 1, int(count * 0.99))] if lags else 0.0}


async def _bare(devices: int, seconds: float) -> dict[str, float]:
    loop = asyncio.get_running_loop()
    fired: list[float] = []
    first = loop.time() + 0.2
    handles: dict[int, asyncio.TimerHandle] = {}

    def fire(index: int, k: int) -> None:
        due = first + index * INTERVAL / devices + k * INTERVAL
        fired.append(loop.time() - due)
        handles[index] = loop.call_at(due + INTERVAL, fire, index, k + 1)

    for index in range(devices):
        handles[index] = loop.call_at(first + index * INTERVAL / devices, fire, index, 0)
    try:
        return await _measure(fired, seconds)
    finally:
        for handle in handles.values():
            handle.cancel()


async def _scheduler(devices: int, seconds: float) -> dict[str, float]:
    fired: list[float] = []

    async def poll(device_id: str, lag: float) -> None:
        fired.append(lag)

    scheduler = PollScheduler(poll, lambda device_id, cycles: None)
    scheduler.start([(f"d{i}", INTERVAL) for i in range(devices)])
    try:
        return await _measure(fired, seconds)
    finally:
        scheduler.shutdown()


def run(min_seconds: float = 10.0) -> dict[str, Any]:
    """Measure and return the figures."""
    rows = []
    for devices in DEVICES:
        base = asyncio.run(_bare(devices, min_seconds))
        mine = asyncio.run(_scheduler(devices, min_seconds))
        for name, figures in [("bare loop timers, one per device (baseline)", base), ("PollScheduler", mine)]:
            rows.append({"path": name, "devices": devices, **figures,
                         "vs baseline": base["µs CPU per poll"] / figures["µs CPU per poll"]})
    return {"interval_s": INTERVAL, "results": rows}


COLUMNS = ["path", "devices", "polls/s", "CPU %", "µs CPU per poll", "lag p50 ms", "lag p99 ms", "vs baseline"]
TITLE = "Poll scheduler cost at 1 s intervals, no-op polls (vs baseline: CPU per poll, higher is cheaper)"
