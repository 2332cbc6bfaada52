"""Pure decoding of Modbus registers into values, for every type and byte/word order."""

from __future__ import annotations

import math
import struct
from collections.abc import Sequence

_STRUCT = {
    "int16": ">h", "uint16": ">H", "int32": ">i", "uint32": ">I", "float32": ">f",
    "int64": ">q", "uint64": ">Q", "float64": ">d",
}


#: Integers beyond this magnitude cannot be stored exactly as a double.
EXACT_INT_LIMIT = 2**53
#: precompiled big-endian unpackers of the numeric types (the driver's fast path)
STRUCTS = {name: struct.Struct(fmt) for name, fmt in _STRUCT.items()}


class DecodeError(ValueError):
    """Registers that cannot become a value of the declared type."""

    reason = "decode"


class NotFinite(DecodeError):
    """A float register pair/quad holding NaN or an infinity."""

    reason = "not_finite"


class OutOfRange(DecodeError):
    """A 64-bit integer too large to be stored exactly."""

    reason = "out_of_range"


def registers_to_bytes(registers: Sequence[int], byte_order: str, word_order: str) -> bytes:
    """Big-endian byte string of ``registers`` after applying the device's orders.

    ``word_order='little'`` means the first register holds the least significant word;
    ``byte_order='little'`` means each register's two bytes are swapped.
    """
    regs = list(registers)
    if word_order == "little":
        regs.reverse()
    if byte_order == "little":
        regs = [((r & 0xFF) << 8) | (r >> 8) for r in regs]
    return struct.pack(f">{len(regs)}H", *regs)


def decode_number(registers: Sequence[int], type_: str, byte_order: str = "big",
                  word_order: str = "big") -> int | float:
    """Decode a numeric type; raises :class:`DecodeError` for non-finite floats."""
    fmt = _STRUCT[type_]
    if len(registers) * 2 != struct.calcsize(fmt):
        raise DecodeError(f"{type_} needs {struct.calcsize(fmt) // 2} registers, got {len(registers)}")
    value = struct.unpack(fmt, registers_to_bytes(registers, byte_order, word_order))[0]
    if isinstance(value, float) and not math.isfinite(value):
        raise NotFinite(f"{type_} value is {value}")
    if isinstance(value, int) and abs(value) > EXACT_INT_LIMIT:
        raise OutOfRange(f"{type_} value {value} exceeds 2**53 and cannot be stored exactly")
    return value


def decode_string(registers: Sequence[int], byte_order: str = "big") -> str:
    """Text packed two characters per register; NUL padding and trailing spaces removed."""
    raw = registers_to_bytes(registers, byte_order, "big")
    return raw.split(b"\x00", 1)[0].decode("latin-1").rstrip()


def decode_bit(register: int, bit: int) -> bool:
    """One bit (0 = least significant) of a register."""
    return bool((register >> bit) & 1)
