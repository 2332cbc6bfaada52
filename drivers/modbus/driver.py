"""The Modbus TCP driver: reads a device's planned requests and decodes its points."""

from __future__ import annotations

import logging
import math
import struct
from collections import Counter
from collections.abc import Sequence
from typing import Any

from drivers.base import DeviceHealth, ReadError, Reading, now_us
from drivers.modbus.connection import ConnectionPool
from drivers.modbus.decode import (
    EXACT_INT_LIMIT,
    STRUCTS,
    DecodeError,
    NotFinite,
    decode_bit,
    decode_number,
    decode_string,
)
from drivers.modbus.plan import PointSpec, ReadRequest, plan_requests, split_request

log = logging.getLogger(__name__)

#: Exception codes that mean "this span is not readable as a whole": split it.
_SPLIT_ON = {"exception:2", "exception:3"}


class ModbusDriver:
    """Reads one Modbus device (one unit id) through a shared connection."""

    def __init__(self, device_id: str, host: str, port: int, unit_id: int,
                 points: Sequence[PointSpec], *, pool: ConnectionPool, timeout: float,
                 byte_order: str = "big", word_order: str = "big", max_gap: int = 8) -> None:
        self.device_id = device_id
        self.unit_id = unit_id
        self.timeout = timeout
        self.byte_order, self.word_order = byte_order, word_order
        self.health = DeviceHealth(device_id)
        self._pool = pool
        self._conn = pool.acquire(host, port)
        self._requests: list[ReadRequest] = plan_requests(points, max_gap)
        self._point_count = len(points)
        self._fast: dict[int, tuple[ReadRequest, list[tuple[Any, int, float, float] | None]]] = {}

    @property
    def requests(self) -> list[ReadRequest]:
        """The current request plan (after any fallback splits)."""
        return list(self._requests)

    async def read(self) -> list[Reading]:
        """Read every point once; failures become bad-quality readings."""
        readings: list[Reading] = []
        bad: Counter[str] = Counter()
        plan: list[ReadRequest] = []
        for request in self._requests:
            done = await self._read_request(request, readings, bad)
            plan.extend(done)
        self._requests = plan
        self.health.record(self._point_count, bad)
        return readings

    async def _read_request(self, request: ReadRequest, out: list[Reading],
                            bad: Counter[str]) -> list[ReadRequest]:
        """Read one span; returns the request(s) to use for it from now on."""
        try:
            values = await self._conn.read(request.function_code, request.address, request.count,
                                           self.unit_id, self.timeout)
        except ReadError as exc:
            if exc.reason in _SPLIT_ON and len(request.points) > 1:
                log.warning("device %s refused %s %d+%d (%s); reading its %d points one by one",
                            self.device_id, request.table, request.address, request.count,
                            exc.reason, len(request.points))
                parts = split_request(request)
                for part in parts:
                    await self._read_request(part, out, bad)
                return parts
            ts = now_us()
            for point in request.points:
                out.append(Reading(self.device_id, point.name, ts, None, None, f"bad:{exc.reason}"))
            bad[exc.reason] += len(request.points)
            return [request]
        ts = now_us()
        cached = self._fast.get(id(request))  # by identity: hashing a request hashes all its points
        if cached is None or cached[0] is not request:
            cached = self._fast[id(request)] = (request, self._fast_plan(request))
        plan = cached[1]
        raw = struct.pack(f">{len(values)}H", *values) if request.table in ("holding", "input") else b""
        for point, fast in zip(request.points, plan, strict=True):
            if fast is None:
                out.append(self._decode(point, values[point.address - request.address:], ts, bad))
                continue
            unpack_from, at, scale, offset = fast
            number = unpack_from(raw, at)[0]
            value = float(number) * scale + offset
            if math.isfinite(value) and abs(number) <= EXACT_INT_LIMIT:
                out.append(Reading(self.device_id, point.name, ts, value))
            else:  # the slow path names the reason (NaN, infinity, beyond 2**53)
                out.append(self._decode(point, values[point.address - request.address:], ts, bad))
        return [request]

    def _fast_plan(self, request: ReadRequest) -> list[tuple[Any, int, float, float] | None]:
        """Per point: a precompiled big-endian unpacker and its byte offset, or None (bits, strings,
        swapped orders) for the general decoder."""
        plan: list[tuple[Any, int, float, float] | None] = []
        for p in request.points:
            orders = (p.byte_order or self.byte_order, p.word_order or self.word_order)
            if request.table in ("holding", "input") and p.type in STRUCTS and orders == ("big", "big"):
                plan.append((STRUCTS[p.type].unpack_from, 2 * (p.address - request.address), p.scale, p.offset))
            else:
                plan.append(None)
        return plan

    def _decode(self, point: PointSpec, values: Sequence[int] | Sequence[bool], ts: int,
                bad: Counter[str]) -> Reading:
        try:
            if point.table in ("coil", "discrete"):
                return Reading(self.device_id, point.name, ts, float(bool(values[0])))
            if point.type == "bool":
                return Reading(self.device_id, point.name, ts, float(decode_bit(int(values[0]), point.bit or 0)))
            regs = [int(v) for v in values[:point.register_count]]
            byte_order = point.byte_order or self.byte_order
            if point.type == "string":
                return Reading(self.device_id, point.name, ts, None, decode_string(regs, byte_order))
            number = decode_number(regs, point.type, byte_order, point.word_order or self.word_order)
            value = float(number) * point.scale + point.offset
            if not math.isfinite(value):
                raise NotFinite(f"{number} x {point.scale} + {point.offset} is not finite")
            return Reading(self.device_id, point.name, ts, value)
        except DecodeError as exc:
            bad[exc.reason] += 1
            log.debug("device %s point %s: %s", self.device_id, point.name, exc)
            return Reading(self.device_id, point.name, ts, None, None, f"bad:{exc.reason}")

    async def close(self) -> None:
        """Give the shared connection back."""
        self._pool.release(self._conn)
