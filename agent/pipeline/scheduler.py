"""Polls on the event loop's timers: one timer per slot of devices, never overlapping, late cycles
counted as missed, starts spread over the interval.

The event loop's own timers (``loop.call_at``, monotonic clock) replace APScheduler's job per
device, and devices with one interval share a timer per slot of :data:`SLOT` seconds: on this
kind of VM each wake-up of the loop costs ~100 µs of CPU whatever it runs, and APScheduler spent
~360 µs per fired poll (18 % of a core for 500 devices at 1 s with polls that do nothing;
docs/performance.md, "The scheduler"). A step of the wall clock (NTP, a suspended VM) no longer
shifts or bunches the schedule.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from functools import partial
from typing import Any

log = logging.getLogger(__name__)

PollFunc = Callable[[str, float], Coroutine[Any, Any, None]]

#: Devices sharing an interval start in slots at least this far apart (one timer per slot).
SLOT = 0.01
#: The first polls start this long after :meth:`PollScheduler.start` / :meth:`PollScheduler.add`.
START_DELAY = 0.2
ADD_DELAY = 0.1


def grace_for(interval: float) -> float:
    """How late a cycle may start before it counts as missed: half the interval, at least 1 s."""
    return max(1.0, interval / 2)


@dataclass(eq=False)
class _Slot:
    """Devices polled together: cycle ``k`` is due at ``first + k * interval`` (loop time)."""

    interval: float
    first: float
    devices: list[str] = field(default_factory=list)
    k: int = 0
    handle: asyncio.TimerHandle | None = None

    def due(self) -> float:
        return self.first + self.k * self.interval


class PollScheduler:
    """Runs ``poll(device_id, lag_seconds)`` every device interval.

    Start times are spread evenly across each interval (in slots of :data:`SLOT` seconds) so a
    hundred devices do not all fire in the same millisecond. A cycle that comes while the device's
    previous poll still runs, that starts more than :func:`grace_for` late, or that the loop slept
    through entirely is skipped and reported to ``on_missed`` (once per cycle).
    """

    def __init__(self, poll: PollFunc, on_missed: Callable[[str, int], None]) -> None:
        self._poll = poll
        self._on_missed = on_missed  # (device, cycles missed)
        self._slots: dict[str, _Slot] = {}  # device -> its slot
        #: each device's poll still running; kept across remove() and add() of one device (a reload
        #: that changed it), so that its new schedule never starts a second poll beside the old one
        self._polls: dict[str, asyncio.Task[None]] = {}
        self._running = False
        self._failing: set[str] = set()  # devices whose poll raised, logged once until one succeeds
        self._epoch_offset = 0.0  # wall clock minus loop clock, for :meth:`first_runs`

    def start(self, devices: list[tuple[str, float]]) -> None:
        """Schedule ``(device_id, interval)`` pairs and start."""
        loop = asyncio.get_running_loop()
        self._epoch_offset = time.time() - loop.time()
        base = loop.time() + START_DELAY
        by_interval: dict[float, list[str]] = {}
        for device_id, interval in devices:
            by_interval.setdefault(interval, []).append(device_id)
        for interval, ids in by_interval.items():
            count = max(1, min(len(ids), round(interval / SLOT)))
            slots = [_Slot(interval, base + interval * index / count) for index in range(count)]
            for index, device_id in enumerate(ids):
                self._join(device_id, slots[index * count // len(ids)])
        self._running = True
        for slot in self._live_slots():
            self._arm(slot)

    def add(self, device_id: str, interval: float) -> None:
        """Start polling one more device (a reload), its first poll shortly from now."""
        slot = _Slot(interval, asyncio.get_running_loop().time() + ADD_DELAY)
        self._join(device_id, slot)
        if self._running:
            self._arm(slot)

    def remove(self, device_id: str) -> None:
        """Stop polling one device (a poll already running finishes)."""
        slot = self._slots.pop(device_id, None)
        if slot is None:
            return
        slot.devices.remove(device_id)
        if not slot.devices and slot.handle is not None:
            slot.handle.cancel()

    def first_runs(self) -> dict[str, float]:
        """Epoch time of each device's first poll (its phase within the interval)."""
        return {device_id: slot.first + self._epoch_offset for device_id, slot in self._slots.items()}

    @property
    def running(self) -> bool:
        """True while polls are being fired (started, not paused or shut down)."""
        return self._running

    def pause(self) -> None:
        """Stop firing new polls; running ones carry on to completion."""
        self._running = False
        for slot in self._live_slots():
            if slot.handle is not None:
                slot.handle.cancel()
                slot.handle = None

    def shutdown(self) -> None:
        """Stop firing and cancel the polls still running (call :meth:`pause` and wait first)."""
        self.pause()
        for task in self._polls.values():
            task.cancel()

    def _join(self, device_id: str, slot: _Slot) -> None:
        self._slots[device_id] = slot
        slot.devices.append(device_id)

    def _live_slots(self) -> list[_Slot]:
        return list({id(slot): slot for slot in self._slots.values()}.values())

    def _arm(self, slot: _Slot) -> None:
        slot.handle = asyncio.get_running_loop().call_at(slot.due(), self._fire, slot)

    def _fire(self, slot: _Slot) -> None:
        if not self._running or not slot.devices:
            return
        try:
            self._start_polls(slot)
        finally:  # whatever happened, the slot keeps its schedule
            self._arm(slot)

    def _start_polls(self, slot: _Slot) -> None:
        now = asyncio.get_running_loop().time()
        # coalesce: cycles the loop slept through entirely (blocked longer than an interval) are
        # missed, and the latest one due is the one to run now
        latest = max(slot.k, math.floor((now - slot.first) / slot.interval))
        skipped, slot.k = latest - slot.k, latest + 1
        late = max(0.0, now - (slot.first + latest * slot.interval))
        too_late = late > grace_for(slot.interval)
        for device_id in slot.devices:
            if device_id in self._polls or too_late:
                self._on_missed(device_id, skipped + 1)
                continue
            if skipped:
                self._on_missed(device_id, skipped)
            task = asyncio.create_task(self._poll(device_id, late), name=f"poll {device_id}")
            self._polls[device_id] = task
            task.add_done_callback(partial(self._done, device_id))

    def _done(self, device_id: str, task: asyncio.Task[None]) -> None:
        if self._polls.get(device_id) is task:
            del self._polls[device_id]
        error = None if task.cancelled() else task.exception()
        if error is None:
            self._failing.discard(device_id)
        elif device_id not in self._failing:
            self._failing.add(device_id)
            log.error("poll %s failed; logged again only after a poll that succeeds", device_id, exc_info=error)
