"""Tell register types from two reads of a Modbus table: float32 (and its word order), counters, plain integers.

Each run of consecutive answering registers is cut into points by a small dynamic programme that
maximises a score: a register pair that reads as a plausible float32 in both reads (finite, not
denormal, 1e-3 <= |x| <= 1e7) scores 2; a uint32 or uint64 that increased between the reads (and,
in its word order, by the smallest step: a counter's low word moves first) scores 1.5 or 2.5; a
plain uint16/int16 scores 0. Floats outrank counters because a noisy float often "increases"
too. Small penalties break ties (see the constants). Zero pairs beside floats are taken as
float32 0.0. Byte order is assumed big (high byte first).
"""

from __future__ import annotations

import math
import struct
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from agent.discover.modbus import REGISTER_TABLES, TableScan
from drivers.modbus.decode import registers_to_bytes

PLAUSIBLE_MIN, PLAUSIBLE_MAX = 1e-3, 1e7
FLOAT_SCORE, COUNTER32_SCORE, COUNTER64_SCORE = 2.0, 1.5, 2.5
#: a float in the table's less common word order loses ties to one in its usual order
OTHER_ORDER = 0.01
#: a lone register holding 16 random-looking bits is more likely half of a float cut wrongly than an
#: integer of its own (integers are mostly small): it loses ties, so floats align on the run's ends
LOOSE_HALF = 0.1
PLAIN = 0x400
#: a counter's score falls by this per bit of its step: of two cuts, the one with the smaller steps wins
PER_STEP_BIT = 0.001
ORDERS = ("big", "little")


@dataclass(frozen=True)
class Proposal:
    """One proposed point: where, which type, and the values that suggested it."""

    table: str
    address: int
    type: str                          # bool, uint16, int16, float32, uint32, uint64
    value: float | int                 # as first read
    again: float | int | None = None   # as read a moment later (register tables)
    word_order: str | None = None      # of multi-register types
    counter: bool = False

    @property
    def size(self) -> int:
        """Registers (or bits) the point takes."""
        return {"float32": 2, "uint32": 2, "uint64": 4}.get(self.type, 1)


@dataclass(frozen=True)
class _Tile:
    offset: int
    size: int
    type: str
    order: str | None = None
    counter: bool = False


def plausible_float(value: float) -> bool:
    """A float a device plausibly measures: exactly 0, or finite with 1e-3 <= |x| <= 1e7 (so never denormal)."""
    return value == 0.0 or (math.isfinite(value) and PLAUSIBLE_MIN <= abs(value) <= PLAUSIBLE_MAX)


def as_float(registers: Sequence[int], word_order: str) -> float:
    """float32 of two registers, high byte first, in ``word_order``."""
    return float(struct.unpack(">f", registers_to_bytes(registers, "big", word_order))[0])


def as_uint(registers: Sequence[int], word_order: str) -> int:
    """Unsigned integer of two or four registers, high byte first, in ``word_order``."""
    return int.from_bytes(registers_to_bytes(registers, "big", word_order), "big")


def _reads(first: Sequence[int], second: Sequence[int | None], i: int, n: int) -> list[Sequence[int]]:
    """The registers ``i..i+n-1`` as read each time (the second read only when complete)."""
    again = second[i:i + n]
    reads: list[Sequence[int]] = [first[i:i + n]]
    if len(again) == n and all(v is not None for v in again):
        reads.append([v for v in again if v is not None])
    return reads


def float_order(reads: list[Sequence[int]], order: str) -> bool:
    """Whether a register pair reads as a plausible float32 in ``order`` every time, and is not all zero."""
    return any(any(r) for r in reads) and all(plausible_float(as_float(r, order)) for r in reads)


def counter_step(reads: list[Sequence[int]]) -> tuple[str, int] | None:
    """The word order in which the registers are a counter that moved (increased, by the smallest
    step: a counter's low word moves first), and that step."""
    if len(reads) < 2:
        return None
    steps = {order: as_uint(reads[1], order) - as_uint(reads[0], order) for order in ORDERS}
    rising = [order for order in ORDERS if steps[order] > 0]
    order = min(rising, key=lambda o: steps[o]) if rising else None
    return (order, steps[order]) if order is not None else None


def counter_order(reads: list[Sequence[int]]) -> str | None:
    """The word order of :func:`counter_step`, or None when the registers are no moving counter."""
    found = counter_step(reads)
    return found[0] if found is not None else None


def _tiles(first: Sequence[int], second: Sequence[int | None], prefer: str) -> list[_Tile]:
    """The best-scoring cut of one run into points (see the module's docstring)."""
    n = len(first)
    best = [0.0] * (n + 1)
    choice: list[_Tile | None] = [None] * (n + 1)
    other = ORDERS[1] if prefer == ORDERS[0] else ORDERS[0]
    for i in range(n - 1, -1, -1):
        options: list[tuple[float, _Tile]] = []
        if i + 2 <= n:
            pair = _reads(first, second, i, 2)
            options += [(FLOAT_SCORE - (order != prefer) * OTHER_ORDER, _Tile(i, 2, "float32", order))
                        for order in (prefer, other) if float_order(pair, order)]
        for size, type_, score in ((4, "uint64", COUNTER64_SCORE), (2, "uint32", COUNTER32_SCORE)):
            found = counter_step(_reads(first, second, i, size)) if i + size <= n else None
            if found is not None:
                order, step = found
                options.append((score - step.bit_length() * PER_STEP_BIT, _Tile(i, size, type_, order, True)))
        plain = first[i] < PLAIN or first[i] >= 0x10000 - PLAIN
        options.append((0.0 if plain else -LOOSE_HALF, _Tile(i, 1, "int")))
        for score, tile in options:  # the first of equal scores wins: floats, then counters, then integers
            total = score + best[i + tile.size]
            if choice[i] is None or total > best[i] + 1e-9:
                best[i], choice[i] = total, tile
    tiles, i = [], 0
    while i < n:
        chosen = choice[i]
        assert chosen is not None
        tiles.append(chosen)
        i += chosen.size
    return _zeros_beside_floats(tiles, first, second, prefer)


def _zeros_beside_floats(tiles: list[_Tile], first: Sequence[int], second: Sequence[int | None],
                         order: str) -> list[_Tile]:
    """Two zero registers just after or before a float32 are a float32 0.0 (a phase without load ...)."""
    def zero(tile: _Tile) -> bool:
        return tile.type == "int" and first[tile.offset] == 0 and second[tile.offset] in (0, None)

    def sweep(tiles: list[_Tile], backwards: bool) -> list[_Tile]:
        out: list[_Tile] = []
        pending = list(tiles) if backwards else list(reversed(tiles))  # popped from the end: in sweep order
        while pending:
            tile = pending.pop()
            out.append(tile)
            if tile.type == "float32" and len(pending) >= 2 and zero(pending[-1]) and zero(pending[-2]):
                a, b = pending.pop(), pending.pop()
                pending.append(_Tile(min(a.offset, b.offset), 2, "float32", order))  # may extend further
        return list(reversed(out)) if backwards else out

    return sweep(sweep(tiles, backwards=False), backwards=True)


def _integer(table: str, address: int, value: int, again: int | None) -> Proposal:
    """uint16, or int16 when the register reads as a small negative number (0xF000 and up)."""
    if value >= 0xF000:
        return Proposal(table, address, "int16", value - 0x10000, None if again is None else
                        (again - 0x10000 if again >= 0x8000 else again))
    return Proposal(table, address, "uint16", value, again)


def _proposal(table: str, start: int, tile: _Tile, first: Sequence[int], second: Sequence[int | None]) -> Proposal:
    address, regs = start + tile.offset, _reads(first, second, tile.offset, tile.size)
    if tile.type == "int":
        return _integer(table, address, first[tile.offset], second[tile.offset])
    assert tile.order is not None
    decode = as_float if tile.type == "float32" else as_uint
    values = [decode(r, tile.order) for r in regs]
    return Proposal(table, address, tile.type, values[0], values[1] if len(values) > 1 else None,
                    tile.order, tile.counter)


def propose(scan: TableScan) -> list[Proposal]:
    """Points for every answering address of a table: bits as bool, registers as the types they look like."""
    if scan.table not in REGISTER_TABLES:
        return [Proposal(scan.table, a, "bool", v) for a, v in sorted(scan.first.items())]
    runs = [(start, [scan.first[a] for a in range(start, end + 1)], [scan.second.get(a) for a in range(start, end + 1)])
            for start, end in scan.runs()]
    prefer = "big"
    cut = [_tiles(first, second, prefer) for _, first, second in runs]
    orders = Counter(t.order for (_, first, _), tiles in zip(runs, cut, strict=True) for t in tiles
                     if t.type == "float32" and any(first[t.offset:t.offset + 2]))  # zeros have no order
    if orders["little"] > orders["big"]:  # the table's own word order breaks ties between equally good floats
        prefer = "little"
        cut = [_tiles(first, second, prefer) for _, first, second in runs]
    return [_proposal(scan.table, start, tile, first, second)
            for (start, first, second), tiles in zip(runs, cut, strict=True) for tile in tiles]


def word_order_of(proposals: Sequence[Proposal]) -> str | None:
    """The word order most float32 proposals have (None when there are none)."""
    orders = Counter(p.word_order for p in proposals if p.type == "float32")
    return orders.most_common(1)[0][0] if orders else None
