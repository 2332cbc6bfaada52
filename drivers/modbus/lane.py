"""A bus lane: one request at a time on a Modbus link, in the order asked, with a turnaround gap.

A serial line (or an RTU-over-TCP converter in front of one) carries one frame at a time, and
every unit on it waits while one is asked. Requests take turns first come, first served, so the
units of a bus interleave request by request. A probe (a request to a unit that stopped answering)
waits until no ordinary request is queued: a silent unit costs the others at most one timeout per
probe, never a queue of them. On a bus that is never idle, a probe joins the queue after
:data:`PROBE_PATIENCE` seconds, so that the silent unit is still tried (and its recovery seen).
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

#: seconds a probe waits for an idle bus before it queues as an ordinary request
PROBE_PATIENCE = 10.0


class BusLane:
    """Turns on one link: FIFO for requests, probes only when the lane is otherwise idle."""

    def __init__(self, turnaround: float = 0.0) -> None:
        #: pause between the end of one request and the start of the next (seconds)
        self.turnaround = turnaround
        self.patience = PROBE_PATIENCE
        self._busy = False
        self._requests: deque[asyncio.Future[None]] = deque()
        self._probes: deque[asyncio.Future[None]] = deque()
        self._free_at = 0.0  # loop time from which the next request may go out

    @property
    def waiting(self) -> int:
        """Requests and probes waiting for their turn."""
        return len(self._requests) + len(self._probes)

    @asynccontextmanager
    async def turn(self, probe: bool = False) -> AsyncIterator[None]:
        """Hold the lane for one request (and its reply)."""
        await self._acquire(probe)
        try:
            gap = self._free_at - asyncio.get_running_loop().time()
            if gap > 0:
                await asyncio.sleep(gap)
            yield
        finally:
            self._release()

    async def _acquire(self, probe: bool) -> None:
        if not self._busy and not self._requests and not self._probes:
            self._busy = True
            return
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        (self._probes if probe else self._requests).append(waiter)
        try:
            if probe:
                try:
                    await asyncio.wait_for(asyncio.shield(waiter), self.patience)
                except TimeoutError:
                    if waiter in self._probes:  # never idle: queue with the others
                        self._probes.remove(waiter)
                        self._requests.append(waiter)
            await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self._release()  # handed the lane as it was cancelled: pass it on
            else:
                for queue in (self._requests, self._probes):
                    if waiter in queue:
                        queue.remove(waiter)
            raise

    def _release(self) -> None:
        self._free_at = asyncio.get_running_loop().time() + self.turnaround
        for queue in (self._requests, self._probes):
            while queue:
                waiter = queue.popleft()
                if not waiter.done():
                    waiter.set_result(None)  # the lane passes straight to it: _busy stays True
                    return
        self._busy = False
