"""The poll scheduler: never overlapping, late cycles counted as missed, starts spread out."""

from __future__ import annotations

import asyncio
import logging
import time

import pytest

from agent.pipeline.scheduler import PollScheduler


def test_slow_polls_never_overlap_and_skipped_cycles_are_counted(caplog: pytest.LogCaptureFixture) -> None:
    running: dict[str, int] = {"slow": 0, "fast": 0}
    peak: dict[str, int] = {"slow": 0, "fast": 0}
    polls: dict[str, list[float]] = {"slow": [], "fast": []}
    missed: dict[str, int] = {"slow": 0, "fast": 0}

    async def poll(device: str, lag: float) -> None:
        running[device] += 1
        peak[device] = max(peak[device], running[device])
        polls[device].append(time.monotonic())
        await asyncio.sleep(0.35 if device == "slow" else 0.0)
        running[device] -= 1

    def on_missed(device: str) -> None:
        missed[device] += 1

    phases: dict[str, float] = {}

    async def main() -> None:
        scheduler = PollScheduler(poll, on_missed)
        scheduler.start([("slow", 0.1), ("fast", 0.1)])
        phases.update(scheduler.first_runs())
        await asyncio.sleep(1.6)
        scheduler.shutdown()
        await asyncio.sleep(0.4)

    with caplog.at_level(logging.DEBUG, logger="apscheduler"):
        asyncio.run(main())
    assert peak == {"slow": 1, "fast": 1}
    assert missed["slow"] >= 1 and missed["fast"] == 0
    assert len(polls["fast"]) > len(polls["slow"])
    # the two devices are phased half an interval apart, not fired in the same instant
    assert abs(phases["fast"] - phases["slow"] - 0.05) < 1e-6
    # APScheduler's own warning per skipped cycle is dropped: on_missed counts them (the agent logs once)
    skipped = [r.getMessage() for r in caplog.records if "maximum number of running instances" in r.getMessage()]
    assert not skipped, skipped
    assert any("poll slow" in r.getMessage() for r in caplog.records), "other APScheduler lines still pass"
