"""Moves buffered packs to the central database: batch, commit, then acknowledge.

The buffer lives on its own thread (SQLite connections are thread-bound); central writes run
on another, so a slow or dead database never blocks polling.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError

from agent import migrate
from agent.buffer import DiskBuffer, Event, Pack, PutResult
from agent.settings import BufferConfig, CentralConfig
from agent.stats import AgentStats
from agent.writer import CentralWriter, DeviceInfo, Record, error_text, is_config_error, is_unavailable
from drivers.base import Reading

log = logging.getLogger(__name__)
T = TypeVar("T")
RETRY_MAX = 10.0


class Delivery:
    """Owns the disk buffer and the central writer, and runs the write loop."""

    def __init__(self, buffer_cfg: BufferConfig, central_cfg: CentralConfig, engine: Engine,
                 gateway_id: str, devices: Sequence[DeviceInfo], stats: AgentStats,
                 on_quarantine: Callable[[list[tuple[Record, str]]], None] = lambda refused: None,
                 on_write: Callable[[float], None] = lambda seconds: None) -> None:
        self.buffer_cfg, self.central_cfg = buffer_cfg, central_cfg
        self.engine = engine
        self.writer = CentralWriter(engine, gateway_id)
        self.devices = list(devices)
        self.stats = stats
        self.buffer: DiskBuffer | None = None
        self._buffer_thread = ThreadPoolExecutor(1, thread_name_prefix="buffer")
        self._central_thread = ThreadPoolExecutor(1, thread_name_prefix="central")
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

    async def _in_central(self, func: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._central_thread, func, *args)

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
        if self.buffer.reading_rows >= self.central_cfg.batch_size:
            self._wake.set()
        return result

    def update_devices(self, devices: Sequence[DeviceInfo]) -> None:
        """Devices to (re-)register on the next successful connection."""
        self.devices = list(devices)
        self._prepared = False

    def _prepare(self) -> None:
        if self.central_cfg.auto_migrate:
            migrate.upgrade(self.engine)
        self.writer.sync_devices(self.devices)

    async def _write_once(self) -> int:
        """Prepare if needed, write one pack, ack it; returns readings written (raises on DB error)."""
        assert self.buffer is not None
        if not self._prepared:
            await self._in_central(self._prepare)
            self._prepared = True
        pack: Pack = await self.in_buffer(self.buffer.get_pack, self.central_cfg.batch_size)
        if not pack:
            self.progress_at = time.monotonic()
            return 0
        started = time.perf_counter()
        try:
            await self._in_central(self.writer.write, pack)
            self._on_write(time.perf_counter() - started)
        except Exception as exc:  # the records' fault, whatever raised it: isolate them, deliver the rest
            if is_unavailable(exc):
                raise
            self.stats.write_errors += 1
            log.warning("central write failed on a pack's content (%s); isolating the bad records", error_text(exc))
            refused = await self._in_central(self.writer.write_isolating, pack)
            await self._quarantine(refused)
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
        log.error("%d records refused by the central database were quarantined in the buffer: %s",
                  len(refused), refused[0][1] if refused else "")
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
                if isinstance(exc, SQLAlchemyError):
                    # pooled sessions may cache revoked privileges or a broken state: start afresh
                    await self._in_central(self.engine.dispose)
                delay = min(RETRY_MAX, 0.5 * 2 ** min(failures, 10)) * random.uniform(0.8, 1.2)
                await self._sleep(stop, delay)
                continue
            if failures:
                log.info("central database reachable again; delivering the backlog")
                failures = 0
                self._unexpected = None
            self.stats.central_state, self.stats.central_error = "up", ""
            # caught up once less than a batch waits (packs end between commits, so a pack
            # smaller than a batch does not mean the backlog is gone)
            assert self.buffer is not None
            if not written or self.buffer.reading_rows < self.central_cfg.batch_size:
                await self._sleep(stop, self.central_cfg.flush_interval, wake=True)

    def _failed(self, exc: Exception) -> None:
        """Count every failure; state ``down`` (outage: buffer and wait), ``misconfigured`` (wrong
        credentials or database: an operator must act) or ``error`` (anything else); log each once."""
        self.stats.write_errors += 1
        reason = error_text(exc)
        state = "misconfigured" if is_config_error(exc) else "down" if is_unavailable(exc) else "error"
        if state == "error":
            if self._unexpected != reason:  # the traceback once per distinct failure, not once per retry
                log.error("central writer failed unexpectedly; retrying: %s", reason, exc_info=exc)
            self._unexpected = reason
        elif self.stats.central_state != state:
            if state == "misconfigured":
                log.error("central database refused the gateway's settings (check central.url, the user's "
                          "password and grants, the database name): %s", reason)
            else:
                log.error("central database unavailable, buffering on disk: %s", reason)
        else:
            log.debug("central database still %s: %s", state, reason)
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
                            error_text(exc) if not isinstance(exc, TimeoutError) else "timeout")
                return False
        return not self.buffer.reading_rows and not self.buffer.event_rows

    async def close(self) -> None:
        """Close the buffer and database connections, and stop the threads."""
        try:
            if self.buffer is not None:
                await self.in_buffer(self.buffer.close)
            await self._in_central(self.engine.dispose)
        finally:
            self._buffer_thread.shutdown(wait=True)
            self._central_thread.shutdown(wait=False)
