"""Probe a Modbus unit's tables with read requests only (function codes 1-4), mapping the holes.

Each table is read in blocks; a block the device refuses (exception 2, 3 or 4, or no reply) is
split into tenths, down to single addresses, so that the addresses that answer are found
between the ones that do not. The register tables' answering runs are then read a second time,
a moment later, so that counters can be told from measurements. Requests go through
:class:`drivers.modbus.ModbusConnection`, which has no way to write.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter, deque
from dataclasses import dataclass, field

from agent.discover import DiscoveryError
from drivers.base import ReadError
from drivers.modbus import ConnectionPool
from drivers.modbus.connection import Link, ModbusConnection

log = logging.getLogger(__name__)

#: the read function code of each table
TABLE_CODES: dict[str, int] = {"coil": 1, "discrete": 2, "holding": 3, "input": 4}
REGISTER_TABLES = ("holding", "input")
#: replies meaning "nothing (readable) here": illegal address, illegal data value, device failure
NOT_HERE = {"exception:2", "exception:3", "exception:4"}
#: failures meaning "no usable reply" ("connection": an open link the device closed, reopened on the next request)
NO_REPLY = {"timeout", "crc", "bad_reply", "connection"}
#: a table stops being probed after this many; the whole probe, while nothing has answered yet, after 3
MAX_NO_REPLY = 5
SILENT_UNIT = 3
#: replies of a Modbus gateway for a unit behind it that it cannot reach: the table is not probed further
GATEWAY_FAILED = {"exception:10", "exception:11"}
#: the most registers one read request may ask for (bits may be more, but blocks stay register-sized)
MAX_BLOCK = 125


@dataclass(frozen=True)
class ProbePlan:
    """What to probe: one unit behind one link, an address range of some tables."""

    link: Link
    unit: int = 1
    first: int = 0
    last: int = 199
    tables: tuple[str, ...] = ("holding", "input", "coil", "discrete")
    block: int = 100
    timeout: float = 1.0
    #: seconds between the two reads of the register tables (counters move, measurements wander)
    wait: float = 1.0
    #: the pause between a reply and the next request (a serial line's 3.5 characters)
    turnaround: float = 0.0


@dataclass
class TableScan:
    """What one table answered: the value at each address (first and second read)."""

    table: str
    first: dict[int, int] = field(default_factory=dict)
    second: dict[int, int] = field(default_factory=dict)
    errors: Counter[str] = field(default_factory=Counter)
    #: why the table was not probed to the end ("" when it was)
    stopped: str = ""

    def runs(self) -> list[tuple[int, int]]:
        """Consecutive answering addresses as (first, last) pairs."""
        runs: list[tuple[int, int]] = []
        for address in sorted(self.first):
            if runs and runs[-1][1] == address - 1:
                runs[-1] = (runs[-1][0], address)
            else:
                runs.append((address, address))
        return runs


@dataclass
class ModbusScan:
    """The result of a probe."""

    plan: ProbePlan
    tables: list[TableScan]
    requests: int


def blocks(first: int, last: int, size: int) -> list[tuple[int, int]]:
    """(address, count) requests covering ``first``..``last`` in blocks of at most ``size``."""
    return [(a, min(size, last - a + 1)) for a in range(first, last + 1, size)]


async def probe(plan: ProbePlan) -> ModbusScan:
    """Probe every table of ``plan``; :class:`DiscoveryError` when the device cannot be reached or is silent."""
    pool = ConnectionPool()
    conn = pool.acquire(plan.link, plan.turnaround)
    prober = _Prober(conn, plan)
    try:
        tables = [await prober.table(name) for name in plan.tables]
        registers = [scan for scan in tables if scan.table in REGISTER_TABLES and scan.first]
        if registers:
            await asyncio.sleep(plan.wait)
            for scan in registers:
                await prober.again(scan)
    finally:
        pool.release(conn)
    if not any(scan.first for scan in tables):
        errors = sum((scan.errors for scan in tables), Counter[str]())
        if errors and set(errors) <= NO_REPLY | GATEWAY_FAILED:
            raise DiscoveryError(f"unit {plan.unit} at {plan.link} does not answer ({_reasons(errors)})")
    return ModbusScan(plan, tables, prober.requests)


def _reasons(errors: Counter[str]) -> str:
    """``no reply within 1s x3, exception:11 x1``"""
    return ", ".join(f"{reason} x{n}" for reason, n in errors.most_common())


class _Prober:
    """Read requests of one probe, counted; a link that cannot be reached ends the probe."""

    def __init__(self, conn: ModbusConnection, plan: ProbePlan) -> None:
        self.conn, self.plan = conn, plan
        self.requests = 0
        self.answered = False             # has any request been answered (values or an exception)?
        self.silent: Counter[str] = Counter()  # requests without a reply while none was answered

    async def _read(self, function_code: int, address: int, count: int) -> list[int]:
        self.requests += 1
        try:
            values = await self.conn.read(function_code, address, count, self.plan.unit, self.plan.timeout)
        except ReadError as exc:
            if exc.reason == "connection" and self.conn.cause:  # the connect itself failed
                raise DiscoveryError(f"cannot reach {self.plan.link}: {exc.detail}") from None
            if exc.reason in NO_REPLY and not self.answered:
                self.silent[exc.detail or exc.reason] += 1
                if sum(self.silent.values()) >= SILENT_UNIT:
                    raise DiscoveryError(f"unit {self.plan.unit} at {self.plan.link} does not answer: "
                                         f"{_reasons(self.silent)}") from None
            else:
                self.answered = True
            raise
        self.answered = True
        return [int(v) for v in values]

    async def table(self, table: str) -> TableScan:
        """Every answering address of ``table`` in the plan's range, blocks split where refused."""
        scan = TableScan(table)
        code, plan = TABLE_CODES[table], self.plan
        queue = deque(blocks(plan.first, plan.last, plan.block))
        silent = 0
        while queue:
            address, count = queue.popleft()
            try:
                values = await self._read(code, address, count)
            except ReadError as exc:
                scan.errors[exc.reason] += 1
                if exc.reason == "exception:1":
                    scan.stopped = "illegal function (exception 1): the device has no such table"
                    break
                if exc.reason in GATEWAY_FAILED:
                    scan.stopped = f"the gateway cannot reach the unit ({exc.reason.replace(':', ' ')})"
                    break
                if exc.reason in NO_REPLY:
                    silent += 1
                    if silent >= MAX_NO_REPLY:
                        scan.stopped = f"stopped at {address}: {silent} requests without a usable reply ({exc.detail})"
                        break
                if count > 1:  # refused as a whole: ask its parts, in order
                    queue.extendleft(reversed(blocks(address, address + count - 1, max(1, count // 10))))
                continue
            scan.first.update(zip(range(address, address + count), values, strict=True))
        log.debug("%s: %d addresses answer, %s", table, len(scan.first), dict(scan.errors))
        return scan

    async def again(self, scan: TableScan) -> None:
        """Read the answering runs of a register table a second time."""
        code = TABLE_CODES[scan.table]
        for start, end in scan.runs():
            for address, count in blocks(start, end, self.plan.block):
                try:
                    values = await self._read(code, address, count)
                except ReadError as exc:  # the first values stay; counters cannot be told here
                    log.debug("%s %d+%d: second read failed: %s", scan.table, address, count, exc)
                    continue
                scan.second.update(zip(range(address, address + count), values, strict=True))
