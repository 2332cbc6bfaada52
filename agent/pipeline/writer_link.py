"""The agent's side of the writer process: appends to the buffer, starts the writer and keeps it running.

The agent polls and appends on its own core while the writer process (see
:mod:`agent.pipeline.writer_process`) takes packs from the same buffer file and writes them.
If the writer dies it is started again; packs it had not acknowledged are written again
(the central keys make that harmless), so nothing is lost or duplicated. Its reports update
the agent's :class:`~agent.pipeline.stats.AgentStats` exactly as an in-process
:class:`~agent.pipeline.delivery.Delivery` would.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict
from functools import partial
from typing import Any, TypeVar

from agent.buffer.disk import DiskBuffer, PutResult
from agent.pipeline.child import READY_TIMEOUT, RESTART_MAX, log_settings, send, spawn, stop_child
from agent.pipeline.delivery import BufferThread, Outcome, OutputOutcome, backoff, stall_seconds
from agent.pipeline.stats import AgentStats
from agent.pipeline.writer_process import ORPHAN_GRACE_SECONDS
from agent.pipeline.writer_wire import WriterSpec, encode, records_from_wire
from agent.records import DeviceInfo, Event, Record
from agent.settings import AgentConfig
from agent.sinks.build import sink_name
from drivers.base import Reading

log = logging.getLogger(__name__)
T = TypeVar("T")


class WriterExited(Exception):
    """The writer process ended before it was ready."""


class WriterLink:
    """Owns the disk buffer for appends and the writer process that delivers it."""

    def __init__(self, cfg: AgentConfig, devices: Sequence[DeviceInfo], stats: AgentStats, *,
                 on_quarantine: Callable[[list[tuple[Record, str]]], None] = lambda refused: None,
                 on_write: Callable[[float], None] = lambda seconds: None) -> None:
        self.cfg = cfg
        self.sink = sink_name(cfg.central)  # the buffer cursor the writer moves
        self.devices = list(devices)
        self.outcome = Outcome(stats, on_quarantine, on_write)
        #: the outputs' outcomes by sink name (their messages carry it)
        self.outcomes: dict[str, Outcome] = {o.name: OutputOutcome(stats, o.name) for o in cfg.outputs}
        self.buffer: DiskBuffer | None = None
        self.process: asyncio.subprocess.Process | None = None
        #: times the writer process died and was started again
        self.restarts = 0
        self._buffer_thread = BufferThread()
        self._reader: asyncio.Task[None] | None = None
        self._ready = asyncio.Event()
        self._drained: asyncio.Future[bool] | None = None
        self._idle = False
        self._stopping = False
        self._recount: asyncio.Future[None] | None = None

    async def in_buffer(self, func: Callable[..., T], *args: Any) -> T:
        """Run ``func`` on the buffer thread (see :meth:`BufferThread.run`)."""
        return await self._buffer_thread.run(func, *args)

    async def open(self) -> DiskBuffer:
        """Open (or recover) the buffer file; the writer process attaches to it once started."""
        cfg = self.cfg.buffer
        self.buffer = await self.in_buffer(partial(DiskBuffer, cfg.path, cfg.max_size, cfg.when_full,
                                                   sinks=[self.sink, *self.outcomes]))
        return self.buffer

    async def put(self, readings: Sequence[Reading], events: Sequence[Event],
                  state: dict[str, Any] | None) -> PutResult:
        """Append durably; wakes an idle writer once a full batch is waiting."""
        assert self.buffer is not None
        result = await self.in_buffer(self.buffer.put, readings, events, state)
        if self._idle and self.buffer.pending.get(self.sink, 0) >= self.cfg.central.batch_size:
            self._idle = False
            self._send("wake")
        return result

    def update_devices(self, devices: Sequence[DeviceInfo]) -> None:
        """Devices the writer (re-)registers before its next write."""
        self.devices = list(devices)
        self._send("devices", devices=[asdict(d) for d in self.devices])

    def pid(self) -> int | None:
        """The writer process's pid while it runs."""
        process = self.process
        return process.pid if process is not None and process.returncode is None else None

    def stall_seconds(self) -> float:
        """How long records have waited in the buffer without any pack moving (0 when caught up)."""
        return stall_seconds(self.buffer, self.outcome)

    def _send(self, kind: str, **fields: Any) -> None:
        send(self.process, encode(kind, **fields))  # a restarted writer gets the current devices in its spec

    async def _start(self) -> None:
        """Start the writer process and wait until it has the buffer open."""
        level, log_format = log_settings()
        spec = WriterSpec(gateway=self.cfg.gateway.id, central=self.cfg.central, buffer=self.cfg.buffer,
                          devices=self.devices, outputs=self.cfg.outputs, log_level=level, log_format=log_format)
        self._ready.clear()
        self._idle = False
        process = await spawn("agent.pipeline.writer_process")
        self.process = process
        assert process.stdin is not None
        process.stdin.write(spec.model_dump_json().encode() + b"\n")
        self._reader = asyncio.create_task(self._read(process), name="writer-reports")
        ready = asyncio.ensure_future(self._ready.wait())
        done, _ = await asyncio.wait([ready, self._reader], timeout=READY_TIMEOUT,
                                     return_when=asyncio.FIRST_COMPLETED)
        ready.cancel()
        if not self._ready.is_set():
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            raise WriterExited("the writer process ended before it was ready" if done
                               else f"the writer process was not ready within {READY_TIMEOUT:.0f} s")

    async def _read(self, process: asyncio.subprocess.Process) -> None:
        """Apply the writer's reports until its output closes."""
        assert process.stdout is not None
        try:
            while line := await process.stdout.readline():
                self._apply(json.loads(line))
        finally:
            if self._drained is not None and not self._drained.done():
                self._drained.set_result(False)

    def _apply(self, message: dict[str, Any]) -> None:
        kind = message["t"]
        sink = message.get("sink", self.sink)
        outcome = self.outcomes.get(sink, self.outcome)
        if kind == "written":
            outcome.written(message["readings"], message["events"], message["seconds"])
            if self.buffer is not None:
                self.buffer.acked(sink, message["readings"], message["events"])
        elif kind == "idle":
            outcome.idle()
            self._idle = self._idle or sink == self.sink
        elif kind == "state":
            outcome.state(message["state"], message["error"])
        elif kind == "content_error":
            outcome.content_error()
        elif kind == "quarantined":
            outcome.quarantined(records_from_wire(message["records"]), message["count"])
        elif kind == "counters":
            outcome.counters(message["counts"])
        elif kind == "ready":
            log.debug("writer process %s ready", message["pid"])
            self._ready.set()
            if self.restarts and self.buffer is not None:  # the one that died may have acked unreported packs
                self._recount = asyncio.ensure_future(self.in_buffer(self.buffer.recount))
        elif kind == "drained" and self._drained is not None and not self._drained.done():
            self._drained.set_result(bool(message["empty"]))

    async def run(self, stop: asyncio.Event) -> None:
        """Keep the writer process running until ``stop`` is set (cancelling this leaves it running)."""
        failures = 0
        while not stop.is_set() and not self._stopping:
            try:
                if self.process is None or self.process.returncode is not None:
                    await self._start()
                    failures = 0
                assert self.process is not None
                status = await self.process.wait()
                problem = f"the writer process exited with status {status}"
            except (OSError, WriterExited) as exc:
                problem = str(exc)
            if stop.is_set() or self._stopping:
                return
            failures += 1
            self.restarts += 1
            log.error("%s; starting it again (packs it had not acknowledged are written again)", problem)
            self.outcome.state("error", problem)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), backoff(failures, RESTART_MAX))

    async def drain(self, deadline: float) -> bool:
        """At shutdown: have the writer deliver what it can before ``deadline`` (monotonic) and
        exit; True if nothing is left."""
        self._stopping = True
        try:
            if self.process is None or self.process.returncode is not None:
                await self._start()
        except (OSError, WriterExited) as exc:
            log.warning("could not start the writer to deliver the backlog (%s); it stays on disk", exc)
            return False
        self._drained = asyncio.get_running_loop().create_future()
        self._send("drain", seconds=max(0.1, deadline - time.monotonic()))
        try:  # the writer keeps its own deadline; this one only guards against a hung writer
            return await asyncio.wait_for(asyncio.shield(self._drained),
                                          max(0.1, deadline - time.monotonic()) + ORPHAN_GRACE_SECONDS)
        except TimeoutError:
            log.warning("the writer did not finish delivering before shutdown; the backlog stays on disk")
            return False

    async def close(self) -> None:
        """Stop the writer process (it exits once its input closes) and close the buffer."""
        self._stopping = True
        try:
            await stop_child(self.process, "writer process", ORPHAN_GRACE_SECONDS + 2)
            if self._reader is not None:
                await asyncio.gather(self._reader, return_exceptions=True)
            if self.buffer is not None:
                await self.in_buffer(self.buffer.close)
        finally:
            self._buffer_thread.shutdown()
