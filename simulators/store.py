"""Register images of simulated units, served to pymodbus through a duck-typed context."""

from __future__ import annotations

import asyncio
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Protocol

from pymodbus.constants import ExcCodes
from pymodbus.exceptions import NoSuchIdException

from simulators.encoding import encode

TABLE_OF_FC = {1: "coil", 2: "discrete", 3: "holding", 4: "input"}


@dataclass
class RegisterImage:
    """Sparse coils, discrete inputs, holding and input registers of one unit.

    Addresses never set are illegal, as on a real device with holes in its map.
    """

    tables: dict[str, dict[int, int]] = field(
        default_factory=lambda: {"coil": {}, "discrete": {}, "holding": {}, "input": {}})

    def set(self, table: str, address: int, registers: list[int]) -> None:
        """Store raw registers (or bits) from ``address`` on."""
        target = self.tables[table]
        for offset, value in enumerate(registers):
            target[address + offset] = int(value)

    def put(self, table: str, address: int, value: float | str, type_: str,
            byte_order: str = "big", word_order: str = "big", length: int = 0) -> None:
        """Store ``value`` encoded as ``type_``."""
        self.set(table, address, encode(value, type_, byte_order, word_order, length))

    def put_bit(self, table: str, address: int, value: bool) -> None:
        """Store one coil or discrete input."""
        self.tables[table][address] = int(bool(value))

    def read(self, table: str, address: int, count: int) -> list[int] | None:
        """The values at ``address``..``address+count-1``, or None when any is undefined."""
        source = self.tables[table]
        try:
            return [source[a] for a in range(address, address + count)]
        except KeyError:
            return None


class UnitModel(Protocol):
    """A simulated device: owns a register image and refreshes it from its physics."""

    image: RegisterImage

    def refresh(self, now: float) -> None:
        """Bring the image up to date with time ``now`` (seconds, monotonic)."""


@dataclass(frozen=True)
class RequestRecord:
    """One request as received by the simulator."""

    unit: int
    function_code: int
    address: int | None
    count: int | None


class RequestLog:
    """Every request a simulator receives: a bounded list plus exact counters."""

    def __init__(self, keep: int = 100_000) -> None:
        self.recent: deque[RequestRecord] = deque(maxlen=keep)
        self.function_codes: Counter[int] = Counter()
        self.reads_by_unit: Counter[int] = Counter()

    def add(self, record: RequestRecord) -> None:
        """Record one request."""
        self.recent.append(record)
        self.function_codes[record.function_code] += 1
        if record.function_code in TABLE_OF_FC:
            self.reads_by_unit[record.unit] += 1


def line_time(function_code: int, count: int, baud: int) -> float:
    """Seconds a read request and its reply take on an RTU line at ``baud`` (8N1: 10 bits a byte;
    8-byte request; reply of 5 bytes plus the data: 2 per register, 1 per 8 bits)."""
    data = 2 * count if function_code in (3, 4) else (count + 7) // 8
    return (8 + 5 + data) * 10 / baud


class SimulatorContext:
    """What pymodbus' request handler calls to serve reads; refuses every write."""

    def __init__(self, units: dict[int, UnitModel], refresh_period: float = 0.05,
                 silent: set[int] | None = None, line_baud: int | None = None) -> None:
        self.units = units
        self.refresh_period = refresh_period
        #: units that do not answer (as if unplugged), changed while serving
        self.silent = silent if silent is not None else set()
        #: emulate a serial line at this speed: each reply waits the time its frames take on it
        self.line_baud = line_baud
        self._refreshed: dict[int, float] = {}

    def device_ids(self) -> list[int]:
        """Unit ids served."""
        return list(self.units)

    def _unit(self, device_id: int) -> UnitModel:
        unit = self.units.get(device_id)
        if unit is None or device_id in self.silent:
            raise NoSuchIdException(f"unit {device_id} is not simulated")
        now = time.monotonic()
        if now - self._refreshed.get(device_id, 0.0) >= self.refresh_period:
            unit.refresh(now)
            self._refreshed[device_id] = now
        return unit

    async def async_getValues(self, device_id: int, func_code: int, address: int,
                              count: int = 1) -> list[int] | list[bool] | ExcCodes:
        """Serve a read of function code 1-4."""
        table = TABLE_OF_FC.get(func_code)
        if table is None:
            return ExcCodes.ILLEGAL_FUNCTION
        unit = self._unit(device_id)
        if self.line_baud:
            await asyncio.sleep(line_time(func_code, count, self.line_baud))
        values = unit.image.read(table, address, count)
        if values is None:
            return ExcCodes.ILLEGAL_ADDRESS
        if func_code in (1, 2):
            return [bool(v) for v in values]
        return values

    async def async_setValues(self, device_id: int, func_code: int, address: int,
                              values: list[int] | list[bool]) -> ExcCodes | None:
        """Writes are refused: the simulated devices are read-only for everyone."""
        return ExcCodes.ILLEGAL_FUNCTION
