"""One Modbus TCP connection per (host, port), shared by every unit id behind it."""

from __future__ import annotations

import asyncio
import logging

from pymodbus.client import AsyncModbusTcpClient
from pymodbus.exceptions import ConnectionException, ModbusException, ModbusIOException

from drivers.base import Backoff, ReadError

log = logging.getLogger(__name__)



class ModbusConnection:
    """A lazily connected client with a lock, a timeout and reconnect backoff with jitter.

    Only read function codes (1-4) are exposed: there is no way to write through this class.
    """

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.lock = asyncio.Lock()
        self._client: AsyncModbusTcpClient | None = None
        self._backoff = Backoff()
        self.users = 0

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
        wait = self._backoff.wait()
        if wait > 0:
            raise ReadError("connection", f"{self.host}:{self.port} unreachable, next try in {wait:.1f}s")
        self._drop()
        client = AsyncModbusTcpClient(self.host, port=self.port, timeout=timeout, retries=0,
                                      reconnect_delay=0, name=f"{self.host}:{self.port}")
        try:
            ok = await asyncio.wait_for(client.connect(), timeout * 2)
        except (TimeoutError, OSError, ModbusException):
            ok = False
        if not ok:
            client.close()
            self._backoff.failed()
            raise ReadError("connection", f"cannot connect to {self.host}:{self.port}")
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
