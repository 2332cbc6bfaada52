"""One Modbus connection per link (a TCP host:port, an RTU-over-TCP converter or a serial port),
shared by every unit id behind it: one request at a time, in the order asked, with the link's
turnaround between a reply and the next request."""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import os
import socket
import termios
from dataclasses import dataclass
from typing import Any

from pymodbus import FramerType
from pymodbus.client import AsyncModbusSerialClient, AsyncModbusTcpClient
from pymodbus.client.base import ModbusBaseClient
from pymodbus.exceptions import ConnectionException, ModbusException, ModbusIOException

from drivers.base import Backoff, ReadError
from drivers.modbus.lane import BusLane

log = logging.getLogger(__name__)


class ConnectFailed(Exception):
    """A TCP connect that failed; the message says why in a few words."""


async def _addresses(host: str, port: int, timeout: float) -> list[tuple[socket.AddressFamily, tuple[Any, ...]]]:
    """(family, socket address) of ``host``; an IP literal skips the resolver thread."""
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        pass
    else:
        return [(socket.AF_INET6 if ip.version == 6 else socket.AF_INET, (host, port))]
    loop = asyncio.get_running_loop()
    try:
        infos = await asyncio.wait_for(loop.getaddrinfo(host, port, type=socket.SOCK_STREAM), timeout)
    except TimeoutError:
        raise ConnectFailed(f"name not resolved within {timeout:g}s") from None
    except socket.gaierror as exc:
        raise ConnectFailed(f"name not resolved ({exc.strerror})") from None
    return [(family, address) for family, _, _, _, address in infos]


async def open_socket(host: str, port: int, timeout: float) -> socket.socket:
    """A TCP socket connected to ``host:port`` within ``timeout`` seconds, name resolution included.

    Raises :class:`ConnectFailed` saying why: the name did not resolve, the connection was
    refused, or nothing answered in time.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    cause = "no address"
    for family, address in await _addresses(host, port, timeout):
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setblocking(False)
        try:
            await asyncio.wait_for(loop.sock_connect(sock, address), deadline - loop.time())
        except TimeoutError:
            cause = f"no answer within {timeout:g}s"
        except ConnectionRefusedError:
            cause = "connection refused"
        except OSError as exc:  # e.g. "no route to host", "network is unreachable"
            cause = (exc.strerror or str(exc)).lower()
        else:
            return sock
        sock.close()
    raise ConnectFailed(cause)


#: pymodbus closes a TCP link after this many requests in a row without a reply: never, for RTU links
NEVER = 2**31
#: pyserial's parity letters
_PARITY = {"none": "N", "even": "E", "odd": "O"}


def _unaccepted(received: bytes, unit_id: int) -> ReadError:
    """What an RTU reply pymodbus did not take was: another unit's (or a late) frame, or a garbled one."""
    from pymodbus.framer.rtu import FramerRTU

    if len(received) >= 4 and FramerRTU.check_CRC(received[:-2], int.from_bytes(received[-2:], "big")):
        who = f"unit {received[0]}" if received[0] != unit_id else "the unit (late or for another request)"
        return ReadError("bad_reply", f"a reply of {len(received)} bytes from {who}, not taken")
    return ReadError("crc", f"a reply of {len(received)} bytes failed its CRC check")


@dataclass(frozen=True)
class Link:
    """Where requests go: ``tcp`` or ``rtu_over_tcp`` to ``host:port``, or ``serial`` on the device
    ``host`` (``/dev/ttyUSB0``) with its line settings."""

    transport: str
    host: str
    port: int = 502
    baudrate: int = 19200
    parity: str = "even"
    stopbits: int = 1
    bytesize: int = 8

    @property
    def key(self) -> tuple[str, str, int]:
        """What identifies the bus: devices with the same key share one connection."""
        return (self.transport, self.host, 0 if self.transport == "serial" else self.port)

    def __str__(self) -> str:
        if self.transport == "serial":
            return self.host
        return f"{self.host}:{self.port}" + (" (RTU)" if self.transport == "rtu_over_tcp" else "")

    @property
    def rtu(self) -> bool:
        """RTU framing (CRC-checked frames, no transaction id): a serial line or a converter."""
        return self.transport != "tcp"


class ModbusConnection:
    """A lazily connected client on one :class:`BusLane`, with a timeout and reconnect backoff with jitter.

    The timeout bounds the connect (name resolution included) and each request. On an RTU link a
    timeout leaves the link open: it is one silent unit, not a broken line.

    Only read function codes (1-4) are exposed: there is no way to write through this class.
    """

    def __init__(self, link: Link, turnaround: float = 0.0) -> None:
        self.link = link
        self.lane = BusLane(turnaround)
        self._client: ModbusBaseClient | None = None
        self._backoff = Backoff()
        self.users = 0
        #: why the last connect failed ("connection refused", "no answer within 1s", ...), "" when connected
        self.cause = ""
        self._received = b""  # what came back for the current request (RTU: a reply pymodbus did not take)

    @property
    def host(self) -> str:
        """The host (or serial device) of the link."""
        return self.link.host

    @property
    def port(self) -> int:
        """The TCP port of the link (0 for a serial line)."""
        return self.link.key[2]

    def __repr__(self) -> str:
        return f"ModbusConnection({self.link})"

    async def read(self, function_code: int, address: int, count: int, unit_id: int,
                   timeout: float, probe: bool = False) -> list[int] | list[bool]:
        """Read ``count`` registers or bits; raise :class:`ReadError` with a short reason.

        ``probe``: a request to a unit that stopped answering, sent only when the bus is idle.
        """
        async with self.lane.turn(probe):
            client = await self._connected(timeout)
            client.ctx.comm_params.timeout_connect = timeout  # each device's own timeout on a shared link
            self._received = b""
            try:
                response = await asyncio.wait_for(
                    self._request(client, function_code, address, count, unit_id), timeout * 2)
            except (TimeoutError, ModbusIOException) as exc:
                message = str(exc)
                lost = not client.connected
                if not self.link.rtu or lost:
                    self._drop()
                if "device id" in message or "transaction id" in message:
                    raise ReadError("bad_reply", message.split("ERROR: ", 1)[-1][:120]) from exc
                if lost:
                    raise ReadError("connection", "connection closed by the device") from exc
                if self.link.rtu and self._received:
                    raise _unaccepted(self._received, unit_id) from exc
                raise ReadError("timeout", f"no reply within {timeout:g}s") from exc
            except ConnectionException as exc:
                self._drop()
                self._backoff.failed()
                raise ReadError("connection", str(exc)) from exc
            except ModbusException as exc:
                self._drop()
                raise ReadError("bad_reply", str(exc)) from exc
            if (response.function_code & 0x7F) != function_code:
                self._drop()
                raise ReadError("bad_reply", f"reply has function code {response.function_code}, "
                                             f"request had {function_code}")
            if response.isError():
                raise ReadError(f"exception:{getattr(response, 'exception_code', 0)}",
                                f"device answered exception code {getattr(response, 'exception_code', 0)}")
            values = response.registers if function_code in (3, 4) else response.bits
            if len(values) < count:
                raise ReadError("bad_reply", f"asked for {count} values, got {len(values)}")
            return list(values[:count])

    @staticmethod
    async def _request(client: ModbusBaseClient, function_code: int, address: int,
                       count: int, unit_id: int):  # type: ignore[no-untyped-def]
        read = {
            1: client.read_coils,
            2: client.read_discrete_inputs,
            3: client.read_holding_registers,
            4: client.read_input_registers,
        }[function_code]
        return await read(address, count=count, device_id=unit_id)

    def _keep_received(self, sending: bool, data: bytes) -> bytes:
        """pymodbus hands over everything received for the request so far: the last is all of it."""
        if not sending:
            self._received = bytes(data)
        return data

    async def _connected(self, timeout: float) -> ModbusBaseClient:
        if self._client is not None and self._client.connected:
            return self._client
        if self._backoff.wait() > 0:
            raise ReadError("connection", self.cause)  # the last attempt's cause, unchanged until the next
        self._drop()
        if self.link.transport == "serial":
            return await self._open_serial(timeout)
        try:
            sock = await open_socket(self.link.host, self.link.port, timeout)
        except ConnectFailed as exc:
            self.cause = str(exc)
            self._backoff.failed()
            raise ReadError("connection", self.cause) from None
        framer = FramerType.RTU if self.link.rtu else FramerType.SOCKET
        client = AsyncModbusTcpClient(self.link.host, port=self.link.port, framer=framer, timeout=timeout, retries=0,
                                      reconnect_delay=0, name=str(self.link), trace_packet=self._keep_received)
        if self.link.rtu:  # a silent unit behind a converter is not a broken link: never give it up for that
            client.set_max_no_responses(NEVER)
        # pymodbus' own connect() would resolve and connect again and, when that fails, return False
        # without the cause; so it gets the socket we connected (as its connect() does with its own).
        try:
            await asyncio.get_running_loop().create_connection(client.ctx.handle_new_connection, sock=sock)
        except OSError as exc:
            sock.close()
            self.cause = (exc.strerror or str(exc)).lower()
            self._backoff.failed()
            raise ReadError("connection", self.cause) from None
        return self._connected_now(client)

    async def _open_serial(self, timeout: float) -> ModbusBaseClient:
        """Open the serial port, or say why not (missing, not permitted, busy)."""
        link = self.link
        problem = ("no such serial port" if not os.path.exists(link.host) else
                   "permission denied (the agent's user needs the dialout group)"
                   if not os.access(link.host, os.R_OK | os.W_OK) else "")
        client = None
        if not problem:
            client = AsyncModbusSerialClient(link.host, framer=FramerType.RTU, baudrate=link.baudrate,
                                             bytesize=link.bytesize, parity=_PARITY[link.parity],
                                             stopbits=link.stopbits, timeout=timeout, retries=0, reconnect_delay=0,
                                             name=link.host, trace_packet=self._keep_received)
            try:
                opened = await client.connect()
            except (OSError, ValueError, termios.error) as exc:  # pyserial: settings the port refuses
                opened, problem = False, f"the port refuses {link.baudrate} baud, parity {link.parity}, " \
                                         f"{link.bytesize} data and {link.stopbits} stop bits ({exc})"
            if not opened:
                client.close()
                problem = problem or "cannot open the serial port (busy, or not a serial device)"
        if client is None or problem:
            self.cause = problem
            self._backoff.failed()
            raise ReadError("connection", problem)
        return self._connected_now(client)

    def _connected_now(self, client: ModbusBaseClient) -> ModbusBaseClient:
        self.cause = ""
        self._client = client
        self._backoff.succeeded()
        return client

    def _drop(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    def close(self) -> None:
        """Close the socket; the next read reconnects."""
        self._drop()


class ConnectionPool:
    """Hands out the shared :class:`ModbusConnection` of each link."""

    def __init__(self) -> None:
        self._connections: dict[tuple[str, str, int], ModbusConnection] = {}

    def acquire(self, link: Link, turnaround: float = 0.0) -> ModbusConnection:
        """The connection of ``link``, created on first use; its turnaround is the longest asked."""
        conn = self._connections.get(link.key)
        if conn is None:
            conn = self._connections[link.key] = ModbusConnection(link, turnaround)
        conn.lane.turnaround = max(conn.lane.turnaround, turnaround)
        conn.users += 1
        return conn

    def release(self, conn: ModbusConnection) -> None:
        """Forget one user; the last one closes the socket."""
        conn.users -= 1
        if conn.users <= 0:
            conn.close()
            self._connections.pop(conn.link.key, None)

    def close_all(self) -> None:
        """Close every socket."""
        for conn in self._connections.values():
            conn.close()
        self._connections.clear()
