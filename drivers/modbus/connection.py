"""One Modbus TCP connection per (host, port), shared by every unit id behind it."""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import socket
from typing import Any

from pymodbus.client import AsyncModbusTcpClient
from pymodbus.exceptions import ConnectionException, ModbusException, ModbusIOException

from drivers.base import Backoff, ReadError

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


class ModbusConnection:
    """A lazily connected client with a lock, a timeout and reconnect backoff with jitter.

    The timeout bounds the connect (name resolution included) and each request.

    Only read function codes (1-4) are exposed: there is no way to write through this class.
    """

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.lock = asyncio.Lock()
        self._client: AsyncModbusTcpClient | None = None
        self._backoff = Backoff()
        self.users = 0
        #: why the last connect failed ("connection refused", "no answer within 1s", ...), "" when connected
        self.cause = ""

    def __repr__(self) -> str:
        return f"ModbusConnection({self.host}:{self.port})"

    async def read(self, function_code: int, address: int, count: int, unit_id: int,
                   timeout: float) -> list[int] | list[bool]:
        """Read ``count`` registers or bits; raise :class:`ReadError` with a short reason."""
        async with self.lock:
            client = await self._connected(timeout)
            try:
                response = await asyncio.wait_for(
                    self._request(client, function_code, address, count, unit_id), timeout * 2)
            except (TimeoutError, ModbusIOException) as exc:
                message = str(exc)
                lost = not client.connected
                self._drop()
                if "device id" in message or "transaction id" in message:
                    raise ReadError("bad_reply", message.split("ERROR: ", 1)[-1][:120]) from exc
                if lost:
                    raise ReadError("connection", "connection closed by the device") from exc
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
    async def _request(client: AsyncModbusTcpClient, function_code: int, address: int,
                       count: int, unit_id: int):  # type: ignore[no-untyped-def]
        read = {
            1: client.read_coils,
            2: client.read_discrete_inputs,
            3: client.read_holding_registers,
            4: client.read_input_registers,
        }[function_code]
        return await read(address, count=count, device_id=unit_id)

    async def _connected(self, timeout: float) -> AsyncModbusTcpClient:
        if self._client is not None and self._client.connected:
            return self._client
        if self._backoff.wait() > 0:
            raise ReadError("connection", self.cause)  # the last attempt's cause, unchanged until the next
        self._drop()
        try:
            sock = await open_socket(self.host, self.port, timeout)
        except ConnectFailed as exc:
            self.cause = str(exc)
            self._backoff.failed()
            raise ReadError("connection", self.cause) from None
        client = AsyncModbusTcpClient(self.host, port=self.port, timeout=timeout, retries=0,
                                      reconnect_delay=0, name=f"{self.host}:{self.port}")
        # pymodbus' own connect() would resolve and connect again and, when that fails, return False
        # without the cause; so it gets the socket we connected (as its connect() does with its own).
        try:
            await asyncio.get_running_loop().create_connection(client.ctx.handle_new_connection, sock=sock)
        except OSError as exc:
            sock.close()
            self.cause = (exc.strerror or str(exc)).lower()
            self._backoff.failed()
            raise ReadError("connection", self.cause) from None
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
    """Hands out the shared :class:`ModbusConnection` of each (host, port)."""

    def __init__(self) -> None:
        self._connections: dict[tuple[str, int], ModbusConnection] = {}

    def acquire(self, host: str, port: int) -> ModbusConnection:
        """The connection for ``host:port``, created on first use."""
        conn = self._connections.setdefault((host, port), ModbusConnection(host, port))
        conn.users += 1
        return conn

    def release(self, conn: ModbusConnection) -> None:
        """Forget one user; the last one closes the socket."""
        conn.users -= 1
        if conn.users <= 0:
            conn.close()
            self._connections.pop((conn.host, conn.port), None)

    def close_all(self) -> None:
        """Close every socket."""
        for conn in self._connections.values():
            conn.close()
        self._connections.clear()
