"""Coalescing a device's points into as few Modbus read requests as possible."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol

#: Protocol limits per request: registers (FC 3/4) and bits (FC 1/2).
MAX_REGISTERS = 125
MAX_BITS = 2000
#: The only function codes the agent ever sends: read coils/discrete/holding/input.
FUNCTION_CODES = {"coil": 1, "discrete": 2, "holding": 3, "input": 4}


class PointSpec(Protocol):
    """What the driver needs to know of a point (the agent's config satisfies it)."""

    @property
    def name(self) -> str: ...
    @property
    def table(self) -> str: ...
    @property
    def address(self) -> int: ...
    @property
    def type(self) -> str: ...
    @property
    def bit(self) -> int | None: ...
    @property
    def scale(self) -> float: ...
    @property
    def offset(self) -> float: ...
    @property
    def byte_order(self) -> str | None: ...
    @property
    def word_order(self) -> str | None: ...
    @property
    def scale_factor(self) -> str | None: ...
    @property
    def register_count(self) -> int: ...


@dataclass(frozen=True)
class ReadRequest:
    """One read request: a contiguous span of one table and the points inside it."""

    table: str
    address: int
    count: int
    points: tuple[PointSpec, ...]

    @property
    def function_code(self) -> int:
        """Modbus function code of this request (1-4, never a write)."""
        return FUNCTION_CODES[self.table]


def plan_requests(points: Iterable[PointSpec], max_gap: int,
                  max_registers: int = MAX_REGISTERS, max_bits: int = MAX_BITS) -> list[ReadRequest]:
    """Group points per table into spans, merging neighbours separated by at most ``max_gap``."""
    by_table: dict[str, list[PointSpec]] = {}
    for point in points:
        by_table.setdefault(point.table, []).append(point)
    requests: list[ReadRequest] = []
    for table in sorted(by_table):
        limit = max_bits if table in ("coil", "discrete") else max_registers
        requests.extend(_spans(table, sorted(by_table[table], key=lambda p: p.address), max_gap, limit))
    return requests


def _spans(table: str, points: Sequence[PointSpec], max_gap: int, limit: int) -> list[ReadRequest]:
    spans: list[ReadRequest] = []
    start = end = -1
    members: list[PointSpec] = []
    for point in points:
        p_end = point.address + point.register_count - 1
        if members and point.address - end - 1 <= max_gap and max(end, p_end) - start + 1 <= limit:
            members.append(point)
            end = max(end, p_end)
            continue
        if members:
            spans.append(ReadRequest(table, start, end - start + 1, tuple(members)))
        start, end, members = point.address, p_end, [point]
    if members:
        spans.append(ReadRequest(table, start, end - start + 1, tuple(members)))
    return spans


def split_request(request: ReadRequest) -> list[ReadRequest]:
    """One request per point: the fallback when a merged span is refused by the device."""
    return [ReadRequest(request.table, p.address, p.register_count, (p,)) for p in request.points]
