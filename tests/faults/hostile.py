"""A hostile Modbus TCP 'device': a raw socket server misbehaving in one chosen way."""

from __future__ import annotations

import asyncio
import os
import socket
import struct

from simulators.server import free_port

MODES = ("silent", "reset", "exception", "short", "garbage", "oversized", "wrong_tid", "wrong_unit", "wrong_fc")


def _reply(tid: int, unit: int, fc: int, count: int) -> bytes:
    body = struct.pack(">BBB", unit, fc, 2 * count) + b"\x00\x01" * count
    return struct.pack(">HHH", tid, 0, len(body)) + body


class HostileServer:
    """Answers every request according to ``mode`` (see :data:`MODES`)."""

    def __init__(self, mode: str) -> None:
        self.mode = mode
        self.port = free_port()
        self.requests = 0
        self._server: asyncio.base_events.Server | None = None

    async def start(self) -> None:
        """Listen on loopback."""
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)

    async def stop(self) -> None:
        """Stop listening."""
        if self._server is not None:
            self._server.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                header = await reader.readexactly(7)
                tid, _, length, unit = struct.unpack(">HHHB", header)
                pdu = await reader.readexactly(length - 1)
                fc, _, count = struct.unpack(">BHH", pdu[:5])
                self.requests += 1
                if not await self._answer(writer, tid, unit, fc, count):
                    return
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()

    async def _answer(self, writer: asyncio.StreamWriter, tid: int, unit: int, fc: int, count: int) -> bool:
        mode = self.mode
        if mode == "silent":
            return True
        if mode == "reset":
            sock = writer.get_extra_info("socket")
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            writer.transport.abort()
            return False
        payload = {
            "exception": struct.pack(">HHHBBB", tid, 0, 3, unit, fc | 0x80, 4),
            "short": _reply(tid, unit, fc, count)[:9],
            "garbage": os.urandom(64),
            "oversized": struct.pack(">HHHBBB", tid, 0, 2000, unit, fc, 250) + os.urandom(1500),
            "wrong_tid": _reply((tid + 1) & 0xFFFF, unit, fc, count),
            "wrong_unit": _reply(tid, (unit + 1) & 0xFF, fc, count),
            "wrong_fc": _reply(tid, unit, 4 if fc == 3 else 3, count),
        }[mode]
        writer.write(payload)
        await writer.drain()
        return True
