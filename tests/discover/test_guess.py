"""Telling register types from values: plausible floats, word orders, counters, alignment."""

from __future__ import annotations

import struct

import pytest

from agent.discover.guess import Proposal, counter_order, plausible_float, propose
from agent.discover.modbus import TableScan


def f32(value: float, word_order: str = "big") -> list[int]:
    hi, lo = struct.unpack(">2H", struct.pack(">f", value))
    return [hi, lo] if word_order == "big" else [lo, hi]


def u32(value: int, word_order: str = "big") -> list[int]:
    hi, lo = value >> 16, value & 0xFFFF
    return [hi, lo] if word_order == "big" else [lo, hi]


def scan(first: list[int], second: list[int] | None = None, start: int = 0, table: str = "holding") -> TableScan:
    return TableScan(table, dict(enumerate(first, start)), dict(enumerate(second or first, start)))


def kinds(proposals: list[Proposal]) -> list[tuple[int, str, str | None]]:
    return [(p.address, p.type, p.word_order) for p in proposals]


@pytest.mark.parametrize(("value", "plausible"), [
    (0.0, True), (-0.0, True), (1e-3, True), (-230.5, True), (1e7, True),
    (9.99e-4, False), (1.1e7, False), (1e-40, False), (float("nan"), False), (float("inf"), False),
])
def test_plausible_floats_are_zero_or_finite_between_1e_3_and_1e7(value: float, plausible: bool) -> None:
    assert plausible_float(value) is plausible


def test_a_counter_is_the_word_order_whose_value_rose_by_the_smallest_step() -> None:
    assert counter_order([u32(70_000, "big"), u32(70_005, "big")]) == "big"
    assert counter_order([u32(70_000, "little"), u32(70_005, "little")]) == "little"
    assert counter_order([u32(70_005), u32(70_000)]) is None, "a counter never decreases"
    assert counter_order([u32(7), u32(7)]) is None
    assert counter_order([u32(7)]) is None, "one read tells nothing"


def test_floats_in_either_word_order_and_a_trailing_status_word() -> None:
    for order in ("big", "little"):
        regs = [*f32(230.1, order), *f32(49.98, order), *f32(0.92, order), 0x0009]
        moved = [*f32(230.4, order), *f32(50.01, order), *f32(0.93, order), 0x0009]
        assert kinds(propose(scan(regs, moved, start=100))) == [
            (100, "float32", order), (102, "float32", order), (104, "float32", order), (106, "uint16", None)]


def test_floats_after_an_odd_register_are_aligned_on_the_floats() -> None:
    regs = [1, *f32(230.1), *f32(231.7), *f32(229.9)]
    assert kinds(propose(scan(regs))) == [(0, "uint16", None), (1, "float32", "big"), (3, "float32", "big"),
                                          (5, "float32", "big")]


def test_zero_pairs_beside_floats_are_float_zeros_elsewhere_plain_integers() -> None:
    regs = [*f32(230.1), 0, 0, *f32(12.5), 0, 0, 0, 0]
    assert kinds(propose(scan(regs))) == [(0, "float32", "big"), (2, "float32", "big"), (4, "float32", "big"),
                                          (6, "float32", "big"), (8, "float32", "big")]
    assert kinds(propose(scan([0, 0, 0, 0, *f32(12.5, "little")]))) == [
        (0, "float32", "little"), (2, "float32", "little"), (4, "float32", "little")]
    assert kinds(propose(scan([0, 0, 5]))) == [(0, "uint16", None), (1, "uint16", None), (2, "uint16", None)]


def test_counters_32_and_64_bit_and_small_negatives_as_int16() -> None:
    first = [*u32(123_456), 0, 0, *u32(2_000_000), 0xFFFE]
    second = [*u32(123_470), 0, 0, *u32(2_000_040), 0xFFFE]
    proposals = propose(scan(first, second, table="input"))
    assert kinds(proposals) == [(0, "uint32", "big"), (2, "uint64", "big"), (6, "int16", None)]
    assert [(p.value, p.again, p.counter) for p in proposals] == [
        (123_456, 123_470, True), (2_000_000, 2_000_040, True), (-2, -2, False)]


def test_a_noisy_float_that_rose_stays_a_float() -> None:
    assert kinds(propose(scan(f32(230.1), f32(230.2)))) == [(0, "float32", "big")]


def test_bits_are_bools_and_runs_split_at_holes() -> None:
    coils = TableScan("coil", {0: 1, 1: 0, 7: 1})
    assert [(p.address, p.type, p.value) for p in propose(coils)] == [(0, "bool", 1), (1, "bool", 0), (7, "bool", 1)]
    holes = TableScan("input", {0: 1, 2: 2, 3: 3})
    assert holes.runs() == [(0, 0), (2, 3)]
