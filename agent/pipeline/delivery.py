"""Moves buffered packs into a sink (the central database is one): batch, write, then acknowledge.

The buffer lives on its own thread (SQLite connections are thread-bound); the sink runs on a
pool of ``connections`` threads, each pack one transaction on its own connection. Packs of a
round are written in parallel and acknowledged in order, so the sink's cursor never passes a
pack that is not committed: after a failure or a crash the unacknowledged packs are written
again (sinks are idempotent). A round's events travel in a pack of their own, written after
its readings: events land in the order they were buffered (an alert's resolution never
overtakes its opening), and their row updates (``devices.last_seen``) never wait for the
readings' foreign-key locks of the parallel packs (MariaDB: that made parallel packs serial).
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import Any, TypeVar

from agent.buffer.disk import DiskBuffer, Pack, PutResult
from agent.pipeline.stats import AgentStats, OutputStats
from agent.records import DeviceInfo, Event, Record
from agent.settings import BufferConfig
from agent.sinks import FailureKind, Sink
from drivers.base import Reading

log = logging.getLogger(__name__)
T = TypeVar("T")
RETRY_MAX = 10.0
#: events per pack (they are few next to readings: alerts, status changes, metrics)
MAX_EVENTS = 1000

#: the writer's state (``AgentStats.central_state``) after a sink failure of each kind
STATE_OF_FAILURE: dict[FailureKind, str] = {"unavailable": "down", "misconfigured": "misconfigured",
                                            "content": "error"}


class SinkFailure(Exception):
    """A sink call raised ``exc``; carries the sink's own verdict on it and its text."""

    def __init__(self, exc: Exception, kind: FailureKind, text: str) -> None:
        super().__init__(text)
        self.exc, self.kind, self.text = exc, kind, text


def backoff(failures: int, cap: float) -> float:
    """Seconds to wait after ``failures`` failures in a row: 1, 2, 4 ... up to ``cap``, jittered by 20 %."""
    return min(cap, 0.5 * 2 ** min(failures, 10)) * random.uniform(0.8, 1.2)


def describe(exc: BaseException) -> str:
    """One line for a failure: the sink's text for its own, the type and message for anything else."""
    if isinstance(exc, SinkFailure):
        return exc.text
    return (f"{type(exc).__name__}: {exc}".splitlines() or [""])[0][:300]


class BufferThread:
    """The one thread the disk buffer lives on (SQLite connections are thread-bound)."""

    def __init__(self) -> None:
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="buffer")

    async def run(self, func: Callable[..., T], *args: Any) -> T:
        """Run ``func`` on the buffer thread.

        Shielded: a caller cancelled at shutdown must not cancel a queued append (that would
        silently lose the readings it carries); the operation always runs to completion.
        """
        future = asyncio.get_running_loop().run_in_executor(self._pool, func, *args)
        return await asyncio.shield(future)

    def shutdown(self) -> None:
        """Wait for the queued operations, then stop the thread."""
        self._pool.shutdown(wait=True)


class Outcome:
    """What the delivery loop reports: applied to :class:`AgentStats` (and the callbacks) here;
    the writer process sends each call to the agent, which applies it the same way."""

    def __init__(self, stats: AgentStats,
                 on_quarantine: Callable[[list[tuple[Record, str]]], None] = lambda refused: None,
                 on_write: Callable[[float], None] = lambda seconds: None) -> None:
        self.stats = stats
        self.on_quarantine, self.on_write = on_quarantine, on_write
        #: monotonic time the buffer last moved (a pack acknowledged) or was found caught up
        self.progress_at = time.monotonic()

    def written(self, readings: int, events: int, seconds: float | None) -> None:
        """A pack was committed and acknowledged (``seconds``: its write, None when it was isolated)."""
        st = self.stats
        st.rows_written += readings
        st.events_written += events
        st.packs_written += 1
        st.last_flush = time.time()
        self.progress_at = time.monotonic()
        if seconds is not None:
            self.on_write(seconds)

    def idle(self) -> None:
        """Nothing was waiting: the sink is caught up."""
        self.progress_at = time.monotonic()

    def state(self, state: str, error: str) -> None:
        """The sink's state changed or a failure happened (``error`` set): see :data:`STATE_OF_FAILURE`."""
        if error:
            self.stats.write_errors += 1
        self.stats.central_state, self.stats.central_error = state, error

    def content_error(self) -> None:
        """A pack failed on its content; it is being isolated."""
        self.stats.write_errors += 1

    def quarantined(self, refused: list[tuple[Record, str]], count: int | None = None) -> None:
        """Records the sink refused were kept aside in the buffer (``count``: all of them, when
        ``refused`` is a sample)."""
        self.stats.quarantined += len(refused) if count is None else count
        self.on_quarantine(refused)

    def counters(self, counts: dict[str, int]) -> None:
        """The sink's own counts changed (see :meth:`Sink.counters`): central's clock offset,
        conflicts retried, the database node in use and the moves between nodes."""
        offset = counts.get("clock_offset_us")
        self.stats.clock_offset = None if offset is None else offset / 1e6
        self.stats.conflicts_retried = counts.get("conflicts_retried", 0)
        self.stats.central_node = counts.get("node")
        self.stats.failovers = counts.get("failovers", 0)


class OutputOutcome(Outcome):
    """An output's outcome (``outputs:``): its own figures in ``stats.outputs[name]``; the
    central writer's state is not touched."""

    def __init__(self, stats: AgentStats, name: str) -> None:
        super().__init__(stats)
        self.figures = stats.outputs.setdefault(name, OutputStats())

    def written(self, readings: int, events: int, seconds: float | None) -> None:
        f = self.figures
        f.readings += readings
        f.events += events
        f.packs += 1
        f.last_flush = time.time()
        self.progress_at = time.monotonic()

    def state(self, state: str, error: str) -> None:
        if error:
            self.figures.errors += 1
        self.figures.state, self.figures.error = state, error

    def content_error(self) -> None:
        self.figures.errors += 1

    def quarantined(self, refused: list[tuple[Record, str]], count: int | None = None) -> None:
        self.figures.quarantined += len(refused) if count is None else count

    def counters(self, counts: dict[str, int]) -> None:
        self.figures.counters = dict(counts)


class Delivery:
    """Owns (or attaches to, or shares) the disk buffer and runs the write loop into one sink."""

    def __init__(self, buffer_cfg: BufferConfig, sink: Sink, devices: Sequence[DeviceInfo], stats: AgentStats,
                 *, batch_size: int, flush_interval: float, connections: int = 1,
                 on_quarantine: Callable[[list[tuple[Record, str]]], None] = lambda refused: None,
                 on_write: Callable[[float], None] = lambda seconds: None,
                 outcome: Outcome | None = None, buffer_thread: BufferThread | None = None) -> None:
        self.buffer_cfg = buffer_cfg
        self.sink = sink
        self.batch_size, self.flush_interval = batch_size, flush_interval
        self.connections = connections
        self.devices = list(devices)
        self.outcome = outcome or Outcome(stats, on_quarantine, on_write)
        self.buffer: DiskBuffer | None = None
        self.buffer_thread = buffer_thread or BufferThread()
        self._sink_threads = ThreadPoolExecutor(connections, thread_name_prefix=f"sink-{sink.name}")
        self._wake = asyncio.Event()
        self._prepared = False
        self.state = "starting"
        self._unexpected: str | None = None
        self._counters: dict[str, int] = {}
        #: the writer runs in this process and never restarts (see :class:`~agent.pipeline.writer_link.WriterLink`)
        self.restarts = 0

    def pid(self) -> int | None:
        """The process the writer runs in: this one."""
        return os.getpid()

    async def in_buffer(self, func: Callable[..., T], *args: Any) -> T:
        """Run ``func`` on the buffer thread (see :meth:`BufferThread.run`)."""
        return await self.buffer_thread.run(func, *args)

    async def _on_sink_thread(self, func: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._sink_threads, func, *args)

    async def _in_sink(self, func: Callable[..., T], *args: Any) -> T:
        """Run a sink call on a sink thread; whatever it raises comes back as a :class:`SinkFailure`."""
        try:
            return await self._on_sink_thread(func, *args)
        except Exception as exc:  # the sink's own taxonomy decides what it means, not this module
            raise SinkFailure(exc, self.sink.classify(exc), self.sink.error_text(exc)) from exc

    async def open(self, sinks: Sequence[str] = ()) -> DiskBuffer:
        """Open (or recover) the buffer file, to append to it and deliver from it (with a cursor
        for each of ``sinks`` too: other deliveries sharing it)."""
        cfg = self.buffer_cfg
        self.buffer = await self.in_buffer(partial(DiskBuffer, cfg.path, cfg.max_size, cfg.when_full,
                                                   sinks=[self.sink.name, *sinks]))
        return self.buffer

    async def attach(self, sinks: Sequence[str]) -> DiskBuffer:
        """Open the buffer another process appends to (it opened it first), only to deliver from it."""
        cfg = self.buffer_cfg
        self.buffer = await self.in_buffer(partial(DiskBuffer, cfg.path, cfg.max_size, cfg.when_full,
                                                   sinks=sinks, attach=True))
        return self.buffer

    async def put(self, readings: Sequence[Reading], events: Sequence[Event],
                  state: dict[str, Any] | None) -> PutResult:
        """Append durably; wakes the writer once a full batch is waiting."""
        assert self.buffer is not None
        result = await self.in_buffer(self.buffer.put, readings, events, state)
        self.wake_if_full()
        return result

    def wake_if_full(self) -> None:
        """Write now rather than at the next flush interval when a full batch waits for this sink."""
        if self.buffer is not None and self.buffer.pending.get(self.sink.name, 0) >= self.batch_size:
            self.wake()

    def wake(self) -> None:
        """A full batch waits: write now rather than at the next flush interval."""
        self._wake.set()

    def update_devices(self, devices: Sequence[DeviceInfo]) -> None:
        """Devices to (re-)register on the next successful connection."""
        self.devices = list(devices)
        self._prepared = False

    def _timed_write(self, pack: Pack) -> float:
        started = time.perf_counter()
        self.sink.write(pack)
        return time.perf_counter() - started

    async def _take_round(self) -> tuple[list[Pack], Pack]:
        """Up to ``connections`` consecutive packs of readings, and a pack of the next events."""
        assert self.buffer is not None
        packs: list[Pack] = []
        after: Pack | None = None
        for _ in range(self.connections):
            pack = await self.in_buffer(self.buffer.take, self.sink.name, self.batch_size, 0, after)
            if not pack:
                break
            packs.append(pack)
            after = pack
            if not pack.more:
                break
        events = await self.in_buffer(self.buffer.take, self.sink.name, 0, MAX_EVENTS)
        return packs, events

    async def _write_round(self) -> bool:
        """Prepare if needed, write a round of packs, ack them in order; True if more records wait
        (raises when the sink fails: packs after the failed one stay unacknowledged)."""
        assert self.buffer is not None
        if not self._prepared:
            devices = self.devices
            await self._in_sink(self.sink.prepare, devices)
            self._prepared = self.devices is devices  # a device change meanwhile: prepare again
        packs, events = await self._take_round()
        await self._deliver(packs)
        if events.events:
            await self._deliver([events])
        return bool(packs and packs[-1].more) or len(events.events) == MAX_EVENTS

    async def _deliver(self, packs: list[Pack]) -> None:
        """Write ``packs`` in parallel, then acknowledge them in order; isolate a pack refused for its
        content; stop at the first pack the sink failed (raised: it and those after it are written again)."""
        assert self.buffer is not None
        results = await asyncio.gather(*(self._in_sink(self._timed_write, pack) for pack in packs),
                                       return_exceptions=True)
        for pack, result in zip(packs, results, strict=True):
            seconds: float | None = None
            if isinstance(result, SinkFailure) and result.kind == "content":
                # the records' fault, whatever raised it: isolate them, deliver the rest
                self.outcome.content_error()
                log.warning("sink %s failed on a pack's content (%s); isolating the bad records",
                            self.sink.name, result.text)
                refused = await self._in_sink(self.sink.write_isolating, pack)
                await self._quarantine(refused)
            elif isinstance(result, BaseException):
                raise result
            else:
                seconds = result
            await self.in_buffer(self.buffer.ack, pack)
            self.outcome.written(len(pack.readings), len(pack.events), seconds)

    async def _quarantine(self, refused: list[tuple[Record, str]]) -> None:
        assert self.buffer is not None
        await self.in_buffer(self.buffer.quarantine, refused)
        log.error("%d records refused by sink %s were quarantined in the buffer: %s",
                  len(refused), self.sink.name, refused[0][1] if refused else "")
        self.outcome.quarantined(refused)

    async def run(self, stop: asyncio.Event) -> None:
        """Write until ``stop`` is set: full batches back to back, else every flush_interval."""
        failures = 0
        while not stop.is_set():
            try:
                self._report_counters()
                more = await self._write_round()
            except Exception as exc:  # outermost loop of the writer: it must never die
                failures += 1
                self._failed(exc)
                if isinstance(exc, SinkFailure):
                    # pooled sessions may cache revoked privileges or a broken state: start afresh
                    await self._on_sink_thread(self.sink.reset)
                delay = backoff(failures, RETRY_MAX)
                await self._sleep(stop, delay)
                continue
            if failures:
                log.info("sink %s reachable again; delivering the backlog", self.sink.name)
                failures = 0
                self._unexpected = None
            if self.state != "up":
                self.state = "up"
                self.outcome.state("up", "")
            if not more:  # caught up: wait for a full batch or the flush interval
                self.outcome.idle()
                await self._sleep(stop, self.flush_interval, wake=True)

    def _report_counters(self) -> None:
        """Pass the sink's own counts on when they changed since the last round."""
        counts = self.sink.counters()
        if counts != self._counters:
            self._counters = counts
            self.outcome.counters(counts)

    def _failed(self, exc: Exception) -> None:
        """Count every failure; state ``down`` (outage: buffer and wait), ``misconfigured`` (wrong
        credentials or database: an operator must act) or ``error`` (anything else, the buffer's
        failures included); log each once."""
        reason = describe(exc)
        state = STATE_OF_FAILURE[exc.kind] if isinstance(exc, SinkFailure) else "error"
        name = self.sink.name
        if state == "error":
            if self._unexpected != reason:  # the traceback once per distinct failure, not once per retry
                log.error("delivery to sink %s failed unexpectedly; retrying: %s", name, reason,
                          exc_info=exc.exc if isinstance(exc, SinkFailure) else exc)
            self._unexpected = reason
        elif self.state != state:
            if state == "misconfigured":
                log.error("sink %s refused the gateway's settings (an operator must act; check its url, "
                          "credentials and grants): %s", name, reason)
            else:
                log.error("sink %s unavailable, buffering on disk: %s", name, reason)
        else:
            log.debug("sink %s still %s: %s", name, state, reason)
        self.state = state
        self.outcome.state(state, reason)

    def stall_seconds(self) -> float:
        """How long records have waited in the buffer without any pack moving (0 when caught up)."""
        return stall_seconds(self.buffer, self.outcome)

    async def _sleep(self, stop: asyncio.Event, seconds: float, wake: bool = False) -> None:
        waiters = [asyncio.ensure_future(stop.wait())]
        if wake:
            self._wake.clear()
            waiters.append(asyncio.ensure_future(self._wake.wait()))
        _, pending = await asyncio.wait(waiters, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
        for task in (*pending, *[w for w in waiters if not w.done()]):
            task.cancel()

    async def drain(self, deadline: float) -> bool:
        """At shutdown: write what can be written before ``deadline`` (monotonic); True if nothing is left."""
        while time.monotonic() < deadline:
            try:
                remaining = deadline - time.monotonic()
                more = await asyncio.wait_for(self._write_round(), timeout=max(remaining, 0.1))
            except Exception as exc:  # at shutdown every failure means the same: the backlog stays on disk
                log.warning("could not deliver the backlog before shutdown (%s); it stays on disk",
                            "timeout" if isinstance(exc, TimeoutError) else describe(exc))
                return False
            if not more:  # nothing is appended at shutdown: everything was taken and written
                return True
        return False

    async def close(self) -> None:
        """Close the buffer and the sink, and stop the threads."""
        try:
            if self.buffer is not None:
                await self.in_buffer(self.buffer.close)
            await self.close_sink()
        finally:
            self.buffer_thread.shutdown()

    async def close_sink(self) -> None:
        """Close the sink and stop its threads (a delivery sharing another's buffer closes only this)."""
        try:
            await self._on_sink_thread(self.sink.close)
        finally:
            self._sink_threads.shutdown(wait=False)


def stall_seconds(buffer: DiskBuffer | None, outcome: Outcome) -> float:
    """How long records have waited in ``buffer`` without any pack moving (0 when nothing waits)."""
    if buffer is None or (not buffer.reading_rows and not buffer.event_rows):
        outcome.progress_at = time.monotonic()
        return 0.0
    return time.monotonic() - outcome.progress_at
