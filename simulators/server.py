"""Run simulated units behind a pymodbus Modbus TCP server, recording every request."""

from __future__ import annotations

import asyncio
import logging
import socket
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from typing import Any, Protocol

from pymodbus.pdu import ModbusPDU
from pymodbus.server import ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice

from simulators.store import RequestLog, RequestRecord, SimulatorContext, UnitModel

log = logging.getLogger(__name__)


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that is free on ``host`` right now."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


class ModbusSimulator:
    """One listening port serving ``units`` (unit id -> model)."""

    def __init__(self, units: dict[int, UnitModel], host: str = "127.0.0.1", port: int = 0) -> None:
        self.units = units
        self.host = host
        self.port = port or free_port(host)
        self.requests = RequestLog()
        self._server: ModbusTcpServer | None = None

    def _trace(self, sending: bool, pdu: ModbusPDU) -> ModbusPDU:
        if not sending:
            self.requests.add(RequestRecord(pdu.dev_id, pdu.function_code,
                                            getattr(pdu, "address", None), getattr(pdu, "count", None)))
        return pdu

    async def start(self) -> None:
        """Listen on ``host:port``."""
        placeholder = SimDevice(0, simdata=[SimData(0, datatype=DataType.REGISTERS)])
        server = ModbusTcpServer(placeholder, address=(self.host, self.port), trace_pdu=self._trace)
        server.context = SimulatorContext(self.units)  # type: ignore[assignment]
        await server.serve_forever(background=True)
        self._server = server
        log.info("Modbus simulator listening on %s:%d (units %s)", self.host, self.port, sorted(self.units))

    async def stop(self) -> None:
        """Stop listening and drop client connections."""
        if self._server is not None:
            await self._server.shutdown()
            self._server = None


class Startable(Protocol):
    """A simulator the thread can run: Modbus or OPC UA."""

    async def start(self) -> None: ...

    async def stop(self) -> None: ...


class SimulatorThread:
    """Runs simulators on their own event loop in a background thread (tests, demo)."""

    def __init__(self, simulators: Sequence[Startable]) -> None:
        self.simulators = simulators
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="simulators", daemon=True)

    def __enter__(self) -> SimulatorThread:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        """Start the thread and every simulator; returns once they listen."""
        self._thread.start()
        for sim in self.simulators:
            self.call(sim.start).result(10)

    def call(self, func: Callable[..., Any], *args: Any) -> Future[Any]:
        """Run a coroutine function on the simulators' loop."""
        return asyncio.run_coroutine_threadsafe(func(*args), self.loop)

    def run_sync(self, func: Callable[[], Any]) -> Any:
        """Run a plain function on the simulators' loop (to change models safely)."""
        async def wrapper() -> Any:
            return func()
        return self.call(wrapper).result(10)

    def stop(self) -> None:
        """Stop every simulator and the thread."""
        for sim in self.simulators:
            self.call(sim.stop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)
        self.loop.close()
