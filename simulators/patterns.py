"""A device holding known values of every type in every byte/word order, for decode tests."""

from __future__ import annotations

import time
from dataclasses import dataclass
from itertools import product

from simulators.store import RegisterImage

_SAMPLES: dict[str, list[float | int | str]] = {
    "int16": [-12345, 32767], "uint16": [54321, 0],
    "int32": [-123456789, 2147483647], "uint32": [3123456789, 1],
    "int64": [-1234567890123, 9007199254740991], "uint64": [9007199254740993 - 2, 42],
    "float32": [-1.5, 3.25], "float64": [-12345.678901234, 2.0e-10],
    "string": ["HackSky-7", "AB"],
}
_SIZE = {"int16": 1, "uint16": 1, "int32": 2, "uint32": 2, "float32": 2,
         "int64": 4, "uint64": 4, "float64": 4}
ORDERS = ("big", "little")


@dataclass(frozen=True)
class PatternPoint:
    """One known value at a known address."""

    name: str
    table: str
    address: int
    type: str
    byte_order: str
    word_order: str
    value: float | int | str | bool
    length: int = 0
    bit: int | None = None


def pattern_points() -> list[PatternPoint]:
    """Every type x byte order x word order in holding and input registers, plus bits."""
    points: list[PatternPoint] = []
    address = {"holding": 0, "input": 0}
    for table, (type_, samples), byte_order, word_order in product(
            ("holding", "input"), _SAMPLES.items(), ORDERS, ORDERS):
        for index, value in enumerate(samples):
            length = 6 if type_ == "string" else 0
            size = length or _SIZE[type_]
            name = f"{table[0]}_{type_}_{byte_order[0]}{word_order[0]}_{index}"
            points.append(PatternPoint(name, table, address[table], type_, byte_order, word_order,
                                       value, length))
            # input registers keep a one-register hole between points, so merged reads of
            # that table are refused and the driver's split fallback is exercised
            address[table] += size + (table == "input")
    status = address["holding"]
    for bit in (0, 3, 15):
        points.append(PatternPoint(f"h_status_bit{bit}", "holding", status, "bool", "big", "big",
                                   bit != 3, bit=bit))
    for table in ("coil", "discrete"):
        for addr in (0, 1, 7, 100):
            points.append(PatternPoint(f"{table}_{addr}", table, addr, "bool", "big", "big", addr % 2 == 1))
    return points


class PatternDevice:
    """Serves :func:`pattern_points` with constant values."""

    def __init__(self) -> None:
        self.image = RegisterImage()
        self.points = pattern_points()
        status = 0
        for p in self.points:
            if p.bit is not None:
                status |= int(bool(p.value)) << p.bit
                self.image.put("holding", p.address, status, "uint16")
            elif p.type == "bool":
                self.image.put_bit(p.table, p.address, bool(p.value))
            else:
                self.image.put(p.table, p.address, p.value, p.type, p.byte_order, p.word_order, p.length)
        self.refresh(time.monotonic())

    def refresh(self, now: float) -> None:
        """Constant values: nothing to do."""
