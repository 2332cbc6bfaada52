"""A polling process: runs the drivers of a share of the devices and reads them when the agent asks.

Started by :class:`~agent.pipeline.shards.Shard` as ``python -m agent.pipeline.shard_process``.
The agent keeps the schedule, the checks, the alerts and the buffer; this process owns the
protocol work (sockets, framing, decoding), which is what costs most per point, on its own core.
Frames both ways are a 4-byte length and a ``marshal``-encoded tuple (see :func:`frame`):

- agent -> shard: ``("add", device_id, resolved device JSON)``, ``("remove", device_id)``,
  ``("read", request id, device_id)``;
- shard -> agent: ``("ready", pid)``, ``("read", request id, rows, health)`` where rows are
  reading tuples and health is ``(state, reason, since_us, last_good_us, errors)``.

Like the writer process it ignores SIGINT and SIGTERM (the agent stops it by closing its input)
and dies with the agent.
"""

from __future__ import annotations

import asyncio
import logging
import marshal
import os
import struct
from typing import Any, BinaryIO

from agent.logsetup import setup_logging
from agent.pipeline.child import become_child, stdin_reader
from agent.settings import ResolvedDevice
from agent.sources import SourceContext, source_for
from drivers.base import DeviceHealth, Driver
from drivers.modbus import ConnectionPool

log = logging.getLogger(__name__)
LENGTH = struct.Struct("!I")


def frame(message: tuple[Any, ...]) -> bytes:
    """One message as a frame."""
    body = marshal.dumps(message, 4)
    return LENGTH.pack(len(body)) + body


async def read_frame(reader: asyncio.StreamReader) -> tuple[Any, ...] | None:
    """The next message, or None at the end of the stream."""
    try:
        head = await reader.readexactly(LENGTH.size)
        message: tuple[Any, ...] = marshal.loads(await reader.readexactly(LENGTH.unpack(head)[0]))
    except asyncio.IncompleteReadError:
        return None
    return message


def health_tuple(health: DeviceHealth) -> tuple[Any, ...]:
    """A driver's health as it travels to the agent."""
    return health.state, health.reason, health.since_us, health.last_good_us, dict(health.errors)


class ShardServer:
    """The drivers of this process's devices, read on request."""

    def __init__(self, gateway: str, out: BinaryIO) -> None:
        self.out = out
        self.pool = ConnectionPool()
        self.context = SourceContext(pool=self.pool, gateway=gateway)
        self.drivers: dict[str, Driver] = {}
        self.tasks: set[asyncio.Task[None]] = set()
        self.failing: set[str] = set()  # devices whose driver raised: logged once until it reads again

    def send(self, message: tuple[Any, ...]) -> None:
        """One frame to the agent."""
        try:
            self.out.write(frame(message))
            self.out.flush()
        except (BrokenPipeError, ValueError):  # the agent is gone; the input's end stops this process
            pass

    async def handle(self, message: tuple[Any, ...]) -> None:
        """Apply one command from the agent."""
        op = message[0]
        if op == "read":
            task = asyncio.create_task(self._read(message[1], message[2]))
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)
        elif op == "add":
            dev = ResolvedDevice.model_validate_json(message[2])
            old = self.drivers.pop(message[1], None)
            if old is not None:
                await old.close()
            self.drivers[message[1]] = source_for(dev.config.protocol).driver(dev.config, dev, self.context)
        elif op == "remove":
            driver = self.drivers.pop(message[1], None)
            if driver is not None:
                await driver.close()

    async def _read(self, request: int, device_id: str) -> None:
        driver = self.drivers.get(device_id)
        if driver is None:
            self.send(("read", request, None, f"device {device_id} is not polled by this process"))
            return
        try:
            readings = await driver.read()
        except Exception as exc:  # a driver bug must not end this process: logged once per device
            if device_id not in self.failing:
                self.failing.add(device_id)
                log.exception("device %s: driver failed; will keep trying every cycle", device_id)
            self.send(("read", request, None, f"{type(exc).__name__}: {exc}"))
            return
        self.failing.discard(device_id)
        self.send(("read", request, [tuple(r) for r in readings], health_tuple(driver.health)))

    async def close(self) -> None:
        """Let reads in flight finish, then close every driver."""
        if self.tasks:
            await asyncio.wait(list(self.tasks), timeout=5)
        for driver in self.drivers.values():
            await driver.close()
        self.pool.close_all()


async def serve(out: BinaryIO) -> int:
    """Serve the agent's commands until its end of the pipe closes."""
    reader = await stdin_reader()
    hello = await read_frame(reader)
    if hello is None:
        return 0
    _, gateway, level, log_format = hello
    setup_logging(level, log_format)
    server = ShardServer(gateway, out)
    server.send(("ready", os.getpid()))
    try:
        while (message := await read_frame(reader)) is not None:
            await server.handle(message)
    finally:
        await server.close()
    return 0


def main() -> int:
    """Entry point of ``python -m agent.pipeline.shard_process``."""
    return asyncio.run(serve(become_child()))


if __name__ == "__main__":
    raise SystemExit(main())
