"""Encoding of values into Modbus registers (independent of the driver's decoder)."""

from __future__ import annotations

import struct

_FORMATS = {
    "int16": "h", "uint16": "H", "int32": "i", "uint32": "I", "float32": "f",
    "int64": "q", "uint64": "Q", "float64": "d",
}

#: registers each numeric type takes
REGISTERS = {name: struct.calcsize(fmt) // 2 for name, fmt in _FORMATS.items()}


def encode(value: float | str, type_: str, byte_order: str = "big", word_order: str = "big",
           length: int = 0) -> list[int]:
    """Registers holding ``value`` as ``type_`` in the given byte and word order."""
    if type_ == "string":
        raw = str(value).encode("latin-1")[: length * 2].ljust(length * 2, b"\x00")
    else:
        fmt = _FORMATS[type_]
        number = float(value) if fmt in "fd" else int(value)
        raw = struct.pack("<" + fmt, number)[::-1]  # most significant byte first
    words = [raw[i:i + 2] for i in range(0, len(raw), 2)]
    if word_order == "little" and type_ != "string":
        words.reverse()
    if byte_order == "little":
        words = [w[::-1] for w in words]
    return [int.from_bytes(w, "big") for w in words]
