"""Decoding: every type in every byte/word order round-trips with the simulators' encoder."""

from __future__ import annotations

import math
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from drivers.modbus.decode import (
    DecodeError,
    NotFinite,
    OutOfRange,
    decode_bit,
    decode_number,
    decode_string,
    registers_to_bytes,
)
from simulators.encoding import encode

ORDERS = [("big", "big"), ("big", "little"), ("little", "big"), ("little", "little")]
RANGES = {"int16": (-2**15, 2**15 - 1), "uint16": (0, 2**16 - 1), "int32": (-2**31, 2**31 - 1),
          "uint32": (0, 2**32 - 1), "int64": (-2**63, 2**63 - 1), "uint64": (0, 2**64 - 1)}


@pytest.mark.parametrize("byte_order,word_order", ORDERS)
@pytest.mark.parametrize("type_", sorted(RANGES))
def test_integers_round_trip(type_: str, byte_order: str, word_order: str) -> None:
    lo, hi = RANGES[type_]

    @given(st.integers(lo, hi) | st.sampled_from([lo, hi, 2**53, -(2**53), 2**53 + 1]).filter(lambda v: lo <= v <= hi))
    def check(value: int) -> None:
        regs = encode(value, type_, byte_order, word_order)
        if abs(value) > 2**53:
            with pytest.raises(OutOfRange, match="cannot be stored exactly"):
                decode_number(regs, type_, byte_order, word_order)
        else:
            assert decode_number(regs, type_, byte_order, word_order) == value

    check()


@pytest.mark.parametrize("byte_order,word_order", ORDERS)
@given(value=st.floats(allow_nan=False, allow_infinity=False))
def test_float64_round_trip(byte_order: str, word_order: str, value: float) -> None:
    assert decode_number(encode(value, "float64", byte_order, word_order), "float64", byte_order, word_order) == value


@pytest.mark.parametrize("byte_order,word_order", ORDERS)
@given(value=st.floats(width=32, allow_nan=False, allow_infinity=False))
def test_float32_round_trip(byte_order: str, word_order: str, value: float) -> None:
    assert decode_number(encode(value, "float32", byte_order, word_order), "float32", byte_order, word_order) == value


def test_known_register_layouts() -> None:
    # 0x12345678 as int32: ABCD (big/big), CDAB (word swap), BADC (byte swap), DCBA (both)
    assert decode_number([0x1234, 0x5678], "int32") == 0x12345678
    assert decode_number([0x5678, 0x1234], "int32", "big", "little") == 0x12345678
    assert decode_number([0x3412, 0x7856], "int32", "little", "big") == 0x12345678
    assert decode_number([0x7856, 0x3412], "int32", "little", "little") == 0x12345678
    assert decode_number([0x4049, 0x0FDB], "float32") == pytest.approx(math.pi, rel=1e-7)
    assert registers_to_bytes([0x0102, 0x0304], "little", "little") == b"\x04\x03\x02\x01"


def test_non_finite_floats_and_wrong_sizes_are_decode_errors() -> None:
    nan = list(struct.unpack(">2H", struct.pack(">f", float("nan"))))
    inf = list(struct.unpack(">4H", struct.pack(">d", float("-inf"))))
    with pytest.raises(NotFinite, match="nan"):
        decode_number(nan, "float32")
    with pytest.raises(DecodeError, match="inf"):
        decode_number(inf, "float64")
    with pytest.raises(DecodeError, match="needs 2 registers"):
        decode_number([1], "uint32")


def test_strings_and_bits() -> None:
    assert decode_string(encode("HackSky", "string", length=5)) == "HackSky"
    assert decode_string(encode("AB", "string", "little", length=3), "little") == "AB"
    assert [decode_bit(0b1000_0000_0000_1001, b) for b in (0, 1, 3, 15)] == [True, False, True, True]
