"""Parsing of human-friendly durations (``500ms``, ``2s``) and sizes (``2GiB``)."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Annotated

from pydantic import BeforeValidator, WithJsonSchema

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w|y)?\s*$")
#: ``y`` is 365 days (retention periods: ``30d``, ``1y``)
_DURATION_FACTOR = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 7 * 86400.0,
                    "y": 365 * 86400.0, None: 1.0}
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGT]i?B|B)?\s*$", re.IGNORECASE)
_SIZE_FACTOR = {
    "b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12,
    "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40,
}


def parse_duration(value: object, allow_zero: bool = False) -> float:
    """Seconds from a number or a string such as ``250ms``, ``2s``, ``5m``, ``1h``, ``30d``, ``1y``."""
    if isinstance(value, bool):
        raise ValueError("expected a duration such as 1s or 500ms")
    if isinstance(value, (int, float)):
        seconds = float(value)
    else:
        match = _DURATION.match(str(value))
        if not match:
            raise ValueError(f"{value!r} is not a duration (use e.g. 500ms, 2s, 5m, 1h, 30d)")
        seconds = float(match.group(1)) * _DURATION_FACTOR[match.group(2)]
    if seconds < 0 or (seconds == 0 and not allow_zero):
        raise ValueError("a duration must be greater than zero")
    return seconds


def parse_size(value: object) -> int:
    """Bytes from a number or a string such as ``512MiB`` or ``2GB``."""
    if isinstance(value, bool):
        raise ValueError("expected a size such as 512MiB")
    if isinstance(value, int):
        size = value
    else:
        match = _SIZE.match(str(value))
        if not match:
            raise ValueError(f"{value!r} is not a size (use e.g. 512MiB, 2GiB)")
        size = int(float(match.group(1)) * _SIZE_FACTOR[(match.group(2) or "b").lower()])
    if size <= 0:
        raise ValueError("a size must be greater than zero")
    return size


#: what editors (JSON Schema) accept for a duration and a size: a number, or a number with a unit
DURATION_SCHEMA = {"anyOf": [{"type": "number", "minimum": 0},
                             {"type": "string", "pattern": _DURATION.pattern}],
                   "description": "seconds, or a duration such as 500ms, 2s, 5m, 1h, 30d"}
SIZE_SCHEMA = {"anyOf": [{"type": "integer", "minimum": 1},
                         {"type": "string", "pattern": r"^\s*\d+(\.\d+)?\s*([KMGTkmgt]i?[Bb]|[Bb])?\s*$"}],
               "description": "bytes, or a size such as 512MiB, 2GiB"}

Duration = Annotated[float, BeforeValidator(parse_duration), WithJsonSchema(DURATION_SCHEMA)]
DurationOrZero = Annotated[float, BeforeValidator(lambda v: parse_duration(v, allow_zero=True)),
                           WithJsonSchema(DURATION_SCHEMA)]
ByteSize = Annotated[int, BeforeValidator(parse_size), WithJsonSchema(SIZE_SCHEMA)]


#: layouts of the time column in CSV files (training data, history imports)
TIME_FORMATS = ("%d/%m/%y %H", "%Y-%m-%d %H:%M:%S", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M")


def parse_time(text: str) -> datetime:
    """A timestamp in one of the accepted layouts, as UTC."""
    for fmt in TIME_FORMATS:
        try:
            return datetime.strptime(text, fmt).replace(tzinfo=UTC)
        except ValueError:
            continue
    raise ValueError(f"time {text!r} is not one of {', '.join(TIME_FORMATS)}")
