"""What flows through the pipeline: readings (from drivers.base), events, and the devices they belong to."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from drivers.base import Reading


@dataclass(frozen=True)
class Event:
    """A non-reading record for the central DB: alert, power sample, device status, metric."""

    kind: str
    payload: dict[str, Any]


#: One buffered record, as a sink may refuse it.
Record = Reading | Event


@dataclass(frozen=True)
class DeviceInfo:
    """A device as registered with a sink (the central ``devices`` table)."""

    device_id: str
    name: str | None = None
    type: str = "other"
    location: str | None = None
    protocol: str = "modbus"
    address: str | None = None
