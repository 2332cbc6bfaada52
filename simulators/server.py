"""Run simulated units behind a pymodbus server (Modbus TCP, RTU over TCP or RTU on a serial line),
recording every request; units can be made silent or to garble their replies (a bus's faults)."""

from __future__ import annotations

import asyncio
import logging
import socket
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from typing import Any, Protocol

from pymodbus import FramerType
from pymodbus.pdu import ModbusPDU
from pymodbus.server import ModbusSerialServer, ModbusTcpServer
from pymodbus.server.base import ModbusBaseServer
from pymodbus.simulator import DataType, SimData, SimDevice

from simulators.store import RequestLog, RequestRecord, SimulatorContext, UnitModel

log = logging.getLogger(__name__)


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that is free on ``host`` right now."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


class ModbusSimulator:
    """One listening port serving ``units`` (unit id -> model).

    ``transport``: ``tcp`` (Modbus TCP), ``rtu_over_tcp`` (RTU frames over TCP, as a serial-to-Ethernet
    converter forwards them) or ``serial`` (RTU on the serial device ``host``, e.g. one end of a pty pair).
    On the RTU transports a unit not served stays silent, as on a bus. Units in :attr:`silent` never
    answer there; on Modbus TCP they are answered for with exception 11, as a gateway does for a unit
    behind it that does not respond. Replies of units in :attr:`garbled` arrive with a wrong CRC.
    """

    def __init__(self, units: dict[int, UnitModel], host: str = "127.0.0.1", port: int = 0,
                 transport: str = "tcp", baudrate: int = 19200, parity: str = "E",
                 line_baud: int | None = None) -> None:
        self.units = units
        self.host = host
        self.transport = transport
        self.port = port or (0 if transport == "serial" else free_port(host))
        self.baudrate, self.parity = baudrate, parity
        self.line_baud = line_baud  # emulate a line this fast (a pty or TCP has no speed of its own)
        self.requests = RequestLog()
        self.silent: set[int] = set()
        self.garbled: set[int] = set()
        self._server: ModbusBaseServer | None = None

    def _trace(self, sending: bool, pdu: ModbusPDU) -> ModbusPDU:
        if not sending:
            self.requests.add(RequestRecord(pdu.dev_id, pdu.function_code,
                                            getattr(pdu, "address", None), getattr(pdu, "count", None)))
        return pdu

    def _garble(self, sending: bool, packet: bytes) -> bytes:
        """A reply of a unit in :attr:`garbled` gets its CRC's last byte flipped (RTU frames)."""
        if sending and packet and packet[0] in self.garbled:
            return packet[:-1] + bytes([packet[-1] ^ 0xFF])
        return packet

    async def start(self) -> None:
        """Listen on ``host:port`` (or open the serial device)."""
        placeholder = SimDevice(0, simdata=[SimData(0, datatype=DataType.REGISTERS)])
        server: ModbusBaseServer
        if self.transport == "serial":
            server = ModbusSerialServer(placeholder, port=self.host, baudrate=self.baudrate, parity=self.parity,
                                        ignore_missing_devices=True, trace_pdu=self._trace,
                                        trace_packet=self._garble)
        else:
            rtu = self.transport == "rtu_over_tcp"
            server = ModbusTcpServer(placeholder, address=(self.host, self.port), trace_pdu=self._trace,
                                     framer=FramerType.RTU if rtu else FramerType.SOCKET,
                                     ignore_missing_devices=rtu, trace_packet=self._garble if rtu else None)
        server.context = SimulatorContext(self.units, silent=self.silent,  # type: ignore[assignment]
                                          line_baud=self.line_baud)
        await server.serve_forever(background=True)
        self._server = server
        where = self.host if self.transport == "serial" else f"{self.host}:{self.port}"
        log.info("Modbus simulator (%s) on %s (units %s)", self.transport, where, sorted(self.units))

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
