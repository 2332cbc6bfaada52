"""Polling processes (``workers:``): the agent's side. Devices are spread over them by endpoint.

The agent keeps one schedule, its checks, alerts, detection and the buffer; each device's
driver runs in one polling process (see :mod:`agent.pipeline.shard_process`) and the agent
reads it through a :class:`ShardDriver`, which is a driver like any other to the rest of the
agent. Devices that share an endpoint (Modbus units behind one gateway share its socket) go to
the same process. A process that dies is started again with its devices; their polls meanwhile
come back empty with the device ``down``.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections import Counter
from functools import partial
from typing import Any

from agent.pipeline.child import (
    READY_TIMEOUT,
    RESTART_MAX,
    SPLIT_FROM_POINTS_PER_S,
    log_settings,
    send,
    spawn,
    stop_child,
)
from agent.pipeline.delivery import backoff
from agent.pipeline.shard_process import frame, read_frame
from agent.settings import ResolvedDevice
from drivers.base import DeviceHealth, Reading, now_us

log = logging.getLogger(__name__)

READ_GIVE_UP_MIN = 30.0
make_reading = partial(tuple.__new__, Reading)


def worker_count(setting: int | str, points_per_second: float) -> int:
    """Polling processes for a map: the setting, or for ``auto`` one per core once the map is
    large enough to gain from it (1 means the agent polls itself)."""
    if setting != "auto":
        return int(setting)
    return (os.cpu_count() or 1) if points_per_second >= SPLIT_FROM_POINTS_PER_S else 1


def endpoint_key(dev: ResolvedDevice) -> str:
    """What decides a device's process: its protocol and endpoint without the unit id."""
    return f"{dev.config.protocol}:{dev.config.address.rsplit('/', 1)[0]}"


class ShardUnavailable(Exception):
    """The polling process is not running (starting or restarting)."""


class Shard:
    """One polling process: its devices, its reads waiting for an answer, its restarts."""

    def __init__(self, index: int, gateway: str) -> None:
        self.index, self.gateway = index, gateway
        self.process: asyncio.subprocess.Process | None = None
        #: device id -> (generation, resolved device JSON): re-added after a restart
        self.devices: dict[str, tuple[int, str]] = {}
        self.restarts = 0
        self._loads: dict[str, float] = {}
        self._generation = 0
        self._requests = 0
        self._waiting: dict[int, asyncio.Future[tuple[Any, Any]]] = {}
        self._ready = asyncio.Event()
        self._closing = False
        self._supervisor: asyncio.Task[None] | None = None

    @property
    def running(self) -> bool:
        """The process is up and has said it is ready."""
        return self.process is not None and self.process.returncode is None and self._ready.is_set()

    def _send(self, message: tuple[Any, ...]) -> None:
        send(self.process, frame(message))  # a restarted process is given every device again

    @property
    def load(self) -> float:
        """Points per second this process polls."""
        return sum(self._loads.values())

    def add(self, dev: ResolvedDevice) -> int:
        """Poll ``dev`` here (again, if it changed); returns its generation."""
        self._generation += 1
        self.devices[dev.id] = (self._generation, dev.model_dump_json())
        self._loads[dev.id] = dev.points_per_second
        if self._ready.is_set():
            self._send(("add", dev.id, self.devices[dev.id][1]))
        return self._generation

    def remove(self, device_id: str, generation: int) -> None:
        """Stop polling ``device_id`` unless it was added again since ``generation``."""
        current = self.devices.get(device_id)
        if current is not None and current[0] == generation:
            del self.devices[device_id]
            self._loads.pop(device_id, None)
            self._send(("remove", device_id))

    async def read(self, device_id: str) -> tuple[Any, Any]:
        """One read of ``device_id``: (reading tuples, health tuple), or (None, error text)."""
        if not self.running:
            raise ShardUnavailable(f"polling process {self.index} is not running")
        self._requests += 1
        request = self._requests
        future: asyncio.Future[tuple[Any, Any]] = asyncio.get_running_loop().create_future()
        self._waiting[request] = future
        self._send(("read", request, device_id))
        try:
            return await future
        finally:  # answered, or given up on (the caller's timeout): no answer is waited for any more
            self._waiting.pop(request, None)

    async def start(self) -> None:
        """Start the process, wait for it, give it its devices; then keep it running."""
        await self._spawn()
        self._supervisor = asyncio.create_task(self._supervise(), name=f"shard-{self.index}")

    async def _spawn(self) -> None:
        self._ready.clear()
        process = await spawn("agent.pipeline.shard_process")
        self.process = process
        assert process.stdin is not None and process.stdout is not None
        process.stdin.write(frame(("hello", self.gateway, *log_settings())))
        hello = await asyncio.wait_for(read_frame(process.stdout), READY_TIMEOUT)
        if hello is None or hello[0] != "ready":
            raise ShardUnavailable(f"polling process {self.index} ended before it was ready")
        for device_id, (_, spec) in self.devices.items():
            process.stdin.write(frame(("add", device_id, spec)))
        self._ready.set()
        log.debug("polling process %d (pid %d) ready with %d devices", self.index, process.pid, len(self.devices))

    async def _supervise(self) -> None:
        """Route answers to their reads; start the process again when it dies."""
        failures = 0
        while not self._closing:
            process = self.process
            if process is not None and process.stdout is not None and self._ready.is_set():
                while (message := await read_frame(process.stdout)) is not None:
                    future = self._waiting.pop(message[1], None)
                    if future is not None and not future.done():
                        future.set_result((message[2], message[3]))
                status = await process.wait()
                failures = 0 if self._closing else failures + 1
            else:
                status = None
            self._fail_waiting()
            if self._closing:
                return
            self.restarts += 1
            log.error("polling process %d exited (status %s); starting it again with its %d devices",
                      self.index, status, len(self.devices))
            await asyncio.sleep(backoff(failures, RESTART_MAX))
            try:
                await self._spawn()
            except (OSError, TimeoutError, ShardUnavailable) as exc:
                failures += 1
                log.error("polling process %d did not start: %s", self.index, exc)

    def _fail_waiting(self) -> None:
        waiting, self._waiting = self._waiting, {}
        for future in waiting.values():
            if not future.done():
                future.set_exception(ShardUnavailable(f"polling process {self.index} exited"))

    async def close(self) -> None:
        """Stop the process (it exits once its input closes, after its reads in flight)."""
        self._closing = True
        await stop_child(self.process, f"polling process {self.index}")
        if self._supervisor is not None:
            self._supervisor.cancel()
            await asyncio.gather(self._supervisor, return_exceptions=True)
        self._fail_waiting()


class ShardDriver:
    """A device polled in a polling process, seen by the agent as a driver."""

    def __init__(self, dev: ResolvedDevice, shard: Shard) -> None:
        self.device_id = dev.id
        self.shard = shard
        #: a read never takes this long in a process that works (each request has the device's timeout)
        self.give_up_after = max(READ_GIVE_UP_MIN, 10 * dev.timeout)
        self.generation = shard.add(dev)
        # the driver in the polling process logs the device's state changes
        self.health = DeviceHealth(dev.id, log=None)

    async def read(self) -> list[Reading]:
        """Read every point once, in the polling process."""
        try:
            rows, health = await asyncio.wait_for(self.shard.read(self.device_id), self.give_up_after)
        except TimeoutError:
            return self._down(f"polling process {self.shard.index} did not answer within {self.give_up_after:g} s")
        except ShardUnavailable as exc:
            return self._down(str(exc))
        if rows is None:
            raise RuntimeError(health)  # the driver failed there: the agent logs it once per device
        h = self.health
        h.state, h.reason, h.since_us, h.last_good_us, errors = health
        h.errors = Counter(errors)
        return list(map(make_reading, rows))

    def _down(self, reason: str) -> list[Reading]:
        if self.health.state != "down":
            self.health.state, self.health.since_us = "down", now_us()
        self.health.reason = reason
        return []

    async def close(self) -> None:
        """Stop polling this device (unless it was added again meanwhile, e.g. by a reload)."""
        self.shard.remove(self.device_id, self.generation)


class ShardPool:
    """The polling processes of one agent."""

    def __init__(self, count: int, gateway: str) -> None:
        self.shards = [Shard(index, gateway) for index in range(count)]
        self._placed: dict[str, Shard] = {}  # endpoint -> its process, for the agent's life

    def driver(self, dev: ResolvedDevice) -> ShardDriver:
        """``dev``'s driver, in its endpoint's process (a new endpoint goes to the process that
        polls the fewest points per second)."""
        key = endpoint_key(dev)
        shard = self._placed.get(key)
        if shard is None:
            shard = self._placed[key] = min(self.shards, key=lambda s: (s.load, s.index))
        return ShardDriver(dev, shard)

    @property
    def restarts(self) -> int:
        """Times a polling process died and was started again."""
        return sum(shard.restarts for shard in self.shards)

    def pids(self) -> list[int | None]:
        """Each polling process's pid while it runs."""
        return [s.process.pid if s.process is not None and s.running else None for s in self.shards]

    async def start(self) -> None:
        """Start every process (their devices are added as drivers are made, before or after)."""
        await asyncio.gather(*(shard.start() for shard in self.shards))

    async def close(self) -> None:
        """Stop every process."""
        await asyncio.gather(*(shard.close() for shard in self.shards))
