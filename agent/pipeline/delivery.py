"""Moves buffered packs into a sink (the central database is one): batch, write, then acknowledge.

The buffer lives on its own thread (SQLite connections are thread-bound); the sink runs on
another, so a slow or dead output never blocks polling.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from agent.buffer.disk import DiskBuffer, Pack, PutResult
from agent.pipeline.stats import AgentStats
from agent.records import DeviceInfo, Event, Record
from agent.settings import BufferConfig
from agent.sinks import FailureKind, Sink
from drivers.base import Reading

log = logging.getLogger(__name__)
T = TypeVar("T")
RETRY_MAX = 10.0

#: the writer's state (``AgentStats.central_state``) after a sink failure of each kind
STATE_OF_FAILURE: dict[FailureKind, str] = {"unavailable": "down", "misconfigured": "misconfigured",
                                            "content": "error"}


class SinkFailure(Exception):
    """A sink call raised ``exc``; carries the sink's own verdict on it and its text."""

    def __init__(self, exc: Exception, kind: FailureKind, text: str) -> None:
        super().__init__(text)
        self.exc, self.kind, self.text = exc, kind, text


def describe(exc: BaseException) -> str:
    """One line for a failure: the sink's text for its own, the type and message for anything else."""
    if isinstance(exc, SinkFailure):
        return exc.text
    return (f"{type(exc).__name__}: {exc}".splitlines() or [""])[0][:300]


class Delivery:
    """Owns the disk buffer and runs the write loop into one sink."""

    def __init__(self, buffer_cfg: BufferConfig, sink: Sink, devices: Sequence[DeviceInfo], stats: AgentStats,
                 *, batch_size: int, flush_interval: float,
                 on_quarantine: Callable[[list[tuple[Record, str]]], None] = lambda refused: None,
                 on_write: Callable[[float], None] = lambda seconds: None) -> None:
        self.buffer_cfg = buffer_cfg
        self.sink = sink
        self.batch_size, self.flush_interval = batch_size, flush_interval
        self.devices = list(devices)
        self.stats = stats
        self.buffer: DiskBuffer | None = None
        self._buffer_thread = ThreadPoolExecutor(1, thread_name_prefix="buffer")
        self._sink_thread = ThreadPoolExecutor(1, thread_name_prefix=f"sink-{sink.name}")
        self._wake = asyncio.Event()
        self._prepared = False
        self._on_quarantine = on_quarantine
        self._on_write = on_write
        #: monotonic time the buffer last moved (a pack acknowledged) or was found caught up
        self.progress_at = time.monotonic()
        self._unexpected: str | None = None

    async def in_buffer(self, func: Callable[..., T], *args: Any) -> T:
        """Run ``func`` on the buffer thread.

        Shielded: a caller cancelled at shutdown must not cancel a queued append (that would
        silently lose the readings it carries); the operation always runs to completion.
        """
        future = asyncio.get_running_loop().run_in_executor(self._buffer_thread, func, *args)
        return await asyncio.shield(future)

    async def _on_sink_thread(self, func: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._sink_thread, func, *args)

    async def _in_sink(self, func: Callable[..., T], *args: Any) -> T:
        """Run a sink call on the sink thread; whatever it raises comes back as a :class:`SinkFailure`."""
        try:
            return await self._on_sink_thread(func, *args)
        except Exception as exc:  # the sink's own taxonomy decides what it means, not this module
            raise SinkFailure(exc, self.sink.classify(exc), self.sink.error_text(exc)) from exc

    async def open(self) -> DiskBuffer:
        """Open (or recover) the buffer file."""
        cfg = self.buffer_cfg
        self.buffer = await self.in_buffer(DiskBuffer, cfg.path, cfg.max_size, cfg.when_full)
        return self.buffer

    async def put(self, readings: Sequence[Reading], events: Sequence[Event],
                  state: dict[str, Any] | None) -> PutResult:
        """Append durably; wakes the writer once a full batch is waiting."""
        assert self.buffer is not None
        result = await self.in_buffer(self.buffer.put, readings, events, state)
        if self.buffer.reading_rows >= self.batch_size:
            self._wake.set()
        return result

    def update_devices(self, devices: Sequence[DeviceInfo]) -> None:
        """Devices to (re-)register on the next successful connection."""
        self.devices = list(devices)
        self._prepared = False

    async def _write_once(self) -> int:
        """Prepare if needed, write one pack, ack it; returns readings written (raises when the sink fails)."""
        assert self.buffer is not None
        if not self._prepared:
            devices = self.devices
            await self._in_sink(self.sink.prepare, devices)
            self._prepared = self.devices is devices  # a device change meanwhile: prepare again
        pack: Pack = await self.in_buffer(self.buffer.get_pack, self.batch_size)
        if not pack:
            self.progress_at = time.monotonic()
            return 0
        started = time.perf_counter()
        try:
            await self._in_sink(self.sink.write, pack)
        except SinkFailure as failure:
            if failure.kind != "content":
                raise
            # the records' fault, whatever raised it: isolate them, deliver the rest
            self.stats.write_errors += 1
            log.warning("sink %s failed on a pack's content (%s); isolating the bad records",
                        self.sink.name, failure.text)
            refused = await self._in_sink(self.sink.write_isolating, pack)
            await self._quarantine(refused)
        else:
            self._on_write(time.perf_counter() - started)
        await self.in_buffer(self.buffer.ack, pack)
        self.progress_at = time.monotonic()
        st = self.stats
        st.rows_written += len(pack.readings)
        st.events_written += len(pack.events)
        st.packs_written += 1
        st.last_flush = time.time()
        return len(pack.readings)

    async def _quarantine(self, refused: list[tuple[Record, str]]) -> None:
        assert self.buffer is not None
        await self.in_buffer(self.buffer.quarantine, refused)
        self.stats.quarantined += len(refused)
        log.error("%d records refused by sink %s were quarantined in the buffer: %s",
                  len(refused), self.sink.name, refused[0][1] if refused else "")
        self._on_quarantine(refused)

    async def run(self, stop: asyncio.Event) -> None:
        """Write until ``stop`` is set: full batches back to back, else every flush_interval."""
        failures = 0
        while not stop.is_set():
            try:
                written = await self._write_once()
            except Exception as exc:  # outermost loop of the writer: it must never die
                failures += 1
                self._failed(exc)
                if isinstance(exc, SinkFailure):
                    # pooled sessions may cache revoked privileges or a broken state: start afresh
                    await self._on_sink_thread(self.sink.reset)
                delay = min(RETRY_MAX, 0.5 * 2 ** min(failures, 10)) * random.uniform(0.8, 1.2)
                await self._sleep(stop, delay)
                continue
            if failures:
                log.info("sink %s reachable again; delivering the backlog", self.sink.name)
                failures = 0
                self._unexpected = None
            self.stats.central_state, self.stats.central_error = "up", ""
            # caught up once less than a batch waits (packs end between commits, so a pack
            # smaller than a batch does not mean the backlog is gone)
            assert self.buffer is not None
            if not written or self.buffer.reading_rows < self.batch_size:
                await self._sleep(stop, self.flush_interval, wake=True)

    def _failed(self, exc: Exception) -> None:
        """Count every failure; state ``down`` (outage: buffer and wait), ``misconfigured`` (wrong
        credentials or database: an operator must act) or ``error`` (anything else, the buffer's
        failures included); log each once."""
        self.stats.write_errors += 1
        reason = describe(exc)
        state = STATE_OF_FAILURE[exc.kind] if isinstance(exc, SinkFailure) else "error"
        name = self.sink.name
        if state == "error":
            if self._unexpected != reason:  # the traceback once per distinct failure, not once per retry
                log.error("delivery to sink %s failed unexpectedly; retrying: %s", name, reason,
                          exc_info=exc.exc if isinstance(exc, SinkFailure) else exc)
            self._unexpected = reason
        elif self.stats.central_state != state:
            if state == "misconfigured":
                log.error("sink %s refused the gateway's settings (an operator must act; check its url, "
                          "credentials and grants): %s", name, reason)
            else:
                log.error("sink %s unavailable, buffering on disk: %s", name, reason)
        else:
            log.debug("sink %s still %s: %s", name, state, reason)
        self.stats.central_state, self.stats.central_error = state, reason

    def stall_seconds(self) -> float:
        """How long records have waited in the buffer without any pack moving (0 when caught up)."""
        buffer = self.buffer
        if buffer is None or (not buffer.reading_rows and not buffer.event_rows):
            self.progress_at = time.monotonic()
            return 0.0
        return time.monotonic() - self.progress_at

    async def _sleep(self, stop: asyncio.Event, seconds: float, wake: bool = False) -> None:
        waiters = [asyncio.ensure_future(stop.wait())]
        if wake:
            self._wake.clear()
            waiters.append(asyncio.ensure_future(self._wake.wait()))
        _, pending = await asyncio.wait(waiters, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
        for task in (*pending, *[w for w in waiters if not w.done()]):
            task.cancel()

    async def drain(self, deadline: float) -> bool:
        """At shutdown: write what can be written before ``deadline`` (monotonic); True if empty."""
        assert self.buffer is not None
        while time.monotonic() < deadline:
            if not self.buffer.reading_rows and not self.buffer.event_rows:
                return True
            try:
                remaining = deadline - time.monotonic()
                await asyncio.wait_for(self._write_once(), timeout=max(remaining, 0.1))
            except Exception as exc:  # at shutdown every failure means the same: the backlog stays on disk
                log.warning("could not deliver the backlog before shutdown (%s); it stays on disk",
                            "timeout" if isinstance(exc, TimeoutError) else describe(exc))
                return False
        return not self.buffer.reading_rows and not self.buffer.event_rows

    async def close(self) -> None:
        """Close the buffer and the sink, and stop the threads."""
        try:
            if self.buffer is not None:
                await self.in_buffer(self.buffer.close)
            await self._on_sink_thread(self.sink.close)
        finally:
            self._buffer_thread.shutdown(wait=True)
            self._sink_thread.shutdown(wait=False)
