"""The Modbus driver: reads a device's planned requests and decodes its points (TCP, RTU over TCP, serial)."""

from __future__ import annotations

import logging
import math
import struct
from collections import Counter
from collections.abc import Sequence
from typing import Any

from drivers.base import Backoff, DeviceHealth, ReadError, Reading, now_us
from drivers.modbus.connection import ConnectionPool, Link
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
#: Failures that mean "the device is not answering": the rest of the poll is not sent, so a poll of
#: a silent device costs one timeout, not one per request (3 requests took 3 s with timeout 1 s).
#: Exceptions 10 and 11 are a gateway saying so of the unit behind it (no path, no response).
_UNANSWERED = {"timeout", "connection", "exception:10", "exception:11"}
#: Of those, what a unit (not the link) is silent with: backed off on a shared link
_SILENT = {"timeout", "exception:10", "exception:11"}


class ModbusDriver:
    """Reads one Modbus device (one unit id) through a shared connection.

    On a link shared with other units (a bus, a gateway), a unit that stops answering is backed off
    on its own: polls within its backoff send nothing and read ``bad:timeout``, and the next attempt
    is a probe that waits for the bus to be idle, so the others keep their schedule.
    """

    def __init__(self, device_id: str, host: str, port: int, unit_id: int,
                 points: Sequence[PointSpec], *, pool: ConnectionPool, timeout: float,
                 byte_order: str = "big", word_order: str = "big", max_gap: int = 8,
                 link: Link | None = None, turnaround: float = 0.0) -> None:
        self.device_id = device_id
        self.unit_id = unit_id
        self.timeout = timeout
        self.byte_order, self.word_order = byte_order, word_order
        self.health = DeviceHealth(device_id, log=None)  # its lines lack address and cause: _log_change
        self._pool = pool
        self._conn = pool.acquire(link or Link("tcp", host, port), turnaround)
        self._silent = Backoff()  # this unit's own backoff while it does not answer on a shared link
        self._silence: ReadError | None = None  # what its last attempt failed with
        self._probing = False
        self._first_error: ReadError | None = None  # of the current poll
        self._unanswered: ReadError | None = None  # the current poll's timeout or connection failure
        self._logged: tuple[str, ...] = ("unknown",)  # the state (and cause) last logged
        self._requests: list[ReadRequest] = plan_requests(points, max_gap)
        self._point_count = len(points)
        #: (point, its scale factor's point) of the points scaled by another (SunSpec's sunssf)
        self._scaled = [(p.name, p.scale_factor) for p in points if p.scale_factor]
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
        self._first_error = self._unanswered = None
        skipped = self._silent.failures > 0 and self._silent.wait() > 0
        self._probing = self._silent.failures > 0 and not skipped
        if skipped:  # within its backoff: nothing is sent, the readings say why (as the last attempt did)
            self._unanswered = self._silence or ReadError("timeout", f"no reply within {self.timeout:g}s")
        for request in self._requests:
            done = await self._read_request(request, readings, bad)
            plan.extend(done)
        self._requests = plan
        if self._scaled:
            self._apply_scale_factors(readings, bad)
        self._track_silence(skipped)
        self.health.record(self._point_count, bad)
        self._log_change(bad)
        return readings

    def _apply_scale_factors(self, readings: list[Reading], bad: Counter[str]) -> None:
        """Multiply each scaled point by 10 ** its scale factor's value, read in the same poll; a bad or
        unimplemented factor (SunSpec's -32768) makes the point bad too."""
        index = {r.point: i for i, r in enumerate(readings)}
        for name, factor_name in self._scaled:
            i, factor = index.get(name), index.get(factor_name or "")
            if i is None or factor is None or not readings[i].good:
                continue
            exponent = readings[factor].value
            if exponent is not None and readings[factor].good and -20 <= exponent <= 20:
                value, e = readings[i].value or 0.0, int(exponent)
                readings[i] = readings[i]._replace(value=value * 10.0 ** e if e >= 0 else value / 10.0 ** -e)
            else:
                readings[i] = readings[i]._replace(value=None, quality="bad:scale_factor")
                bad["scale_factor"] += 1

    def _track_silence(self, skipped: bool) -> None:
        """Back this unit off while it does not answer on a link other units share; a poll with no such
        failure resets it."""
        if self._unanswered is None or self._unanswered.reason not in _SILENT:
            self._silent.succeeded()
        elif not skipped and self._conn.users > 1:
            self._silent.failed()
            self._silence = self._unanswered

    def _log_change(self, bad: Counter[str]) -> None:
        """Log a change of state once, with address and cause: down at ERROR, degraded at WARNING,
        recovery at INFO; while down or degraded, again only when the cause changes."""
        state = self.health.state
        error = self._unanswered or self._first_error
        cause = (error.detail or error.reason) if error is not None else ""
        # a timeout's or connection's detail is stable ("connection refused"); others may vary per poll
        key = (state, *sorted(bad), self._unanswered.detail if self._unanswered else "")
        if key == self._logged:
            return
        previous, self._logged = self._logged[0], key
        where = f"{self._conn.link} unit {self.unit_id}"
        if state == "up":
            if previous in ("down", "degraded"):
                log.info("device %s recovered (was %s)", self.device_id, previous)
        elif state == "down":
            log.error("device %s (%s) is down: %s", self.device_id, where, cause)
        else:
            log.warning("device %s (%s) is degraded: %s (%s)", self.device_id, where, self.health.reason, cause)

    async def _read_request(self, request: ReadRequest, out: list[Reading],
                            bad: Counter[str]) -> list[ReadRequest]:
        """Read one span; returns the request(s) to use for it from now on."""
        if self._unanswered is not None:  # not sent: see _UNANSWERED
            return self._mark_bad(request, self._unanswered.reason, out, bad)
        try:
            values = await self._conn.read(request.function_code, request.address, request.count,
                                           self.unit_id, self.timeout, probe=self._probing)
            self._probing = False  # it answered: the rest of the poll goes as usual
        except ReadError as exc:
            self._first_error = self._first_error or exc
            if exc.reason in _UNANSWERED:
                self._unanswered = exc
            if exc.reason in _SPLIT_ON and len(request.points) > 1:
                log.warning("device %s refused %s %d+%d (%s); reading its %d points one by one",
                            self.device_id, request.table, request.address, request.count,
                            exc.reason, len(request.points))
                parts = split_request(request)
                for part in parts:
                    await self._read_request(part, out, bad)
                return parts
            return self._mark_bad(request, exc.reason, out, bad)
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

    def _mark_bad(self, request: ReadRequest, reason: str, out: list[Reading],
                  bad: Counter[str]) -> list[ReadRequest]:
        ts = now_us()
        for point in request.points:
            out.append(Reading(self.device_id, point.name, ts, None, None, f"bad:{reason}"))
        bad[reason] += len(request.points)
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
