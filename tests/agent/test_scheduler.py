"""The poll scheduler: never overlapping, late cycles counted as missed, starts spread out."""

from __future__ import annotations

import asyncio
import itertools
import logging
import time

import pytest

from agent.pipeline.scheduler import SLOT, PollScheduler


def test_slow_polls_never_overlap_and_skipped_cycles_are_counted() -> None:
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

    def on_missed(device: str, cycles: int) -> None:
        missed[device] += cycles

    phases: dict[str, float] = {}

    async def main() -> None:
        scheduler = PollScheduler(poll, on_missed)
        scheduler.start([("slow", 0.1), ("fast", 0.1)])
        phases.update(scheduler.first_runs())
        await asyncio.sleep(1.6)
        scheduler.shutdown()
        await asyncio.sleep(0.4)

    asyncio.run(main())
    assert peak == {"slow": 1, "fast": 1}
    assert missed["slow"] >= 1 and missed["fast"] == 0
    assert len(polls["fast"]) > len(polls["slow"])
    # the two devices are phased half an interval apart, not fired in the same instant
    assert abs(phases["fast"] - phases["slow"] - 0.05) < 1e-6


def test_devices_sharing_an_interval_share_one_timer_per_slot_spread_over_the_interval() -> None:
    polled: list[str] = []

    async def poll(device: str, lag: float) -> None:
        polled.append(device)

    async def main() -> tuple[dict[str, float], int]:
        scheduler = PollScheduler(poll, lambda device, cycles: None)
        scheduler.start([(f"m{i}", 1.0) for i in range(500)] + [("plc", 5.0)])
        timers = len(asyncio.get_running_loop()._scheduled)  # type: ignore[attr-defined]
        phases = scheduler.first_runs()
        scheduler.shutdown()
        return phases, timers

    phases, timers = asyncio.run(main())
    assert timers == 100 + 1, "one timer per 10 ms slot of the 1 s devices, one for the 5 s device"
    starts = sorted({round(phases[f"m{i}"] - phases["m0"], 6) for i in range(500)})
    assert starts == [round(i * SLOT, 6) for i in range(100)], "slots 10 ms apart over the whole second"
    assert phases["m0"] == phases["m4"] != phases["m5"], "five devices to a slot, in map order"


def test_cycles_the_loop_slept_through_are_missed_once_each_and_not_polled_in_a_burst() -> None:
    polls: list[float] = []
    missed: list[str] = []

    async def poll(device: str, lag: float) -> None:
        polls.append(asyncio.get_running_loop().time())

    async def main() -> None:
        scheduler = PollScheduler(poll, lambda device, cycles: missed.extend([device] * cycles))
        scheduler.start([("meter", 0.1)])
        await asyncio.sleep(0.45)
        before = len(polls)
        time.sleep(0.35)  # the loop is blocked: cycles come due and pass without a turn
        blocked_until = asyncio.get_running_loop().time()
        await asyncio.sleep(0.3)
        scheduler.shutdown()
        after = [t for t in polls[before:] if t >= blocked_until]
        assert len(polls[before:]) == len(after), "nothing was polled while the loop was blocked"
        assert all(b - a > 0.05 for a, b in itertools.pairwise(after)), "no catch-up burst: one poll per cycle"

    asyncio.run(main())
    # 0.35 s blocked at 0.1 s: at least three cycles came and went; every cycle from the first poll
    # to the last was either polled or counted missed, once
    assert len(missed) >= 3 and set(missed) == {"meter"}
    assert round((polls[-1] - polls[0]) / 0.1) + 1 == len(polls) + len(missed)


def test_removed_devices_finish_their_poll_added_ones_start_and_a_failing_poll_is_logged(
        caplog: pytest.LogCaptureFixture) -> None:
    polls: dict[str, int] = {"old": 0, "new": 0, "bad": 0}
    finished: list[str] = []

    async def poll(device: str, lag: float) -> None:
        polls[device] += 1
        if device == "bad":
            raise RuntimeError("driver bug")
        await asyncio.sleep(0.15 if device == "old" else 0)
        finished.append(device)

    async def main() -> None:
        scheduler = PollScheduler(poll, lambda device, cycles: None)
        scheduler.start([("old", 0.1), ("bad", 0.1)])
        while not polls["old"]:
            await asyncio.sleep(0.01)
        scheduler.remove("old")
        scheduler.add("new", 0.1)
        await asyncio.sleep(0.5)
        scheduler.shutdown()

    with caplog.at_level(logging.ERROR, logger="agent.pipeline.scheduler"):
        asyncio.run(main())
    assert polls["old"] == 1 and finished.count("old") == 1, "the poll running at the removal finished"
    assert polls["new"] >= 3 and polls["bad"] >= 3, "the schedule goes on after a poll raised"
    assert [r.getMessage() for r in caplog.records if "poll bad failed" in r.getMessage()] == [
        "poll bad failed; logged again only after a poll that succeeds"], "logged once, not once per cycle"


def test_a_changed_device_never_polls_twice_at_once_across_its_reschedule() -> None:
    running, peak, missed = [0], [0], []

    async def poll(device: str, lag: float) -> None:
        running[0] += 1
        peak[0] = max(peak[0], running[0])
        await asyncio.sleep(0.25)
        running[0] -= 1

    async def main() -> None:
        scheduler = PollScheduler(poll, lambda device, cycles: missed.append(cycles))
        scheduler.start([("meter", 0.1)])
        while not running[0]:
            await asyncio.sleep(0.01)
        scheduler.remove("meter")  # a reload changed it: its poll still runs ...
        scheduler.add("meter", 0.1)  # ... when the new schedule's first cycle comes
        await asyncio.sleep(0.6)
        scheduler.shutdown()
        await asyncio.sleep(0)

    asyncio.run(main())
    assert peak[0] == 1 and sum(missed) >= 1
