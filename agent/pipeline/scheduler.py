"""One APScheduler job per device: never overlapping, late cycles counted as missed, spread starts."""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

from apscheduler.events import EVENT_JOB_MAX_INSTANCES, EVENT_JOB_MISSED, JobEvent
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.schedulers.base import STATE_RUNNING
from apscheduler.triggers.interval import IntervalTrigger

log = logging.getLogger(__name__)

PollFunc = Callable[[str, float], Awaitable[None]]

#: APScheduler's own line per skipped or late cycle (33 in 45 s for one silent device): both reach
#: ``on_missed`` as events, which counts them and logs once per device.
_REPORTED_AS_MISSED = ("skipped: maximum number of running instances", "was missed by")


def _not_reported_as_missed(record: logging.LogRecord) -> bool:
    return not any(text in str(record.msg) for text in _REPORTED_AS_MISSED)


def quiet_missed_cycle_lines() -> None:
    """Drop APScheduler's per-cycle warnings (idempotent: the same filter is added once)."""
    for name in ("apscheduler.scheduler", "apscheduler.executors.default"):
        logging.getLogger(name).addFilter(_not_reported_as_missed)


class PollScheduler:
    """Runs ``poll(device_id, lag_seconds)`` every device interval.

    Start times are spread evenly across each interval so a hundred devices do not all
    fire in the same millisecond; a cycle that would overlap the previous one is skipped
    and reported to ``on_missed``.
    """

    def __init__(self, poll: PollFunc, on_missed: Callable[[str], None]) -> None:
        self._poll = poll
        self._on_missed = on_missed
        self._scheduler = AsyncIOScheduler(timezone=UTC)
        quiet_missed_cycle_lines()
        self._scheduler.add_listener(self._missed, EVENT_JOB_MAX_INSTANCES | EVENT_JOB_MISSED)
        self._anchor: dict[str, tuple[float, float]] = {}

    def start(self, devices: list[tuple[str, float]]) -> None:
        """Schedule ``(device_id, interval)`` pairs and start."""
        base = time.time() + 0.2
        by_interval: dict[float, list[str]] = {}
        for device_id, interval in devices:
            by_interval.setdefault(interval, []).append(device_id)
        for interval, ids in by_interval.items():
            for index, device_id in enumerate(ids):
                first = base + interval * index / len(ids)
                self._anchor[device_id] = (first, interval)
                self._scheduler.add_job(
                    self._run, IntervalTrigger(
                        seconds=interval, start_date=datetime.fromtimestamp(first, UTC)),
                    args=[device_id], id=device_id, name=f"poll {device_id}", max_instances=1,
                    coalesce=True, misfire_grace_time=max(1, int(interval // 2)),
                    next_run_time=datetime.fromtimestamp(first, UTC))
        self._scheduler.start()

    def add(self, device_id: str, interval: float) -> None:
        """Start polling one more device (a reload), its first poll shortly from now."""
        first = time.time() + 0.1
        self._anchor[device_id] = (first, interval)
        self._scheduler.add_job(
            self._run, IntervalTrigger(seconds=interval, start_date=datetime.fromtimestamp(first, UTC)),
            args=[device_id], id=device_id, name=f"poll {device_id}", max_instances=1, coalesce=True,
            misfire_grace_time=max(1, int(interval // 2)), next_run_time=datetime.fromtimestamp(first, UTC))

    def remove(self, device_id: str) -> None:
        """Stop polling one device (a poll already running finishes)."""
        self._scheduler.remove_job(device_id)
        self._anchor.pop(device_id, None)

    def first_runs(self) -> dict[str, float]:
        """Epoch time of each device's first poll (its phase within the interval)."""
        return {device_id: first for device_id, (first, _) in self._anchor.items()}

    async def _run(self, device_id: str) -> None:
        first, interval = self._anchor[device_id]
        lag = (time.time() - first) % interval
        await self._poll(device_id, lag)

    def _missed(self, event: JobEvent) -> None:
        self._on_missed(event.job_id)

    @property
    def running(self) -> bool:
        """True while polls are being fired (started, not paused or shut down)."""
        return bool(self._scheduler.running) and self._scheduler.state == STATE_RUNNING

    def pause(self) -> None:
        """Stop firing new polls; running ones carry on to completion."""
        if self._scheduler.running:
            self._scheduler.pause()

    def shutdown(self) -> None:
        """Stop the scheduler (cancels polls still running: call :meth:`pause` and wait first)."""
        if self._scheduler.running:
            self._scheduler.shutdown(wait=False)
