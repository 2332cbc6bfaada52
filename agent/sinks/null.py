"""A sink that accepts everything and only counts it: benchmarks of the pipeline without central."""

from __future__ import annotations

from collections.abc import Sequence

from agent.buffer.disk import Pack
from agent.records import DeviceInfo, Record
from agent.sinks import FailureKind


class NullSink:
    """Accepts every pack and counts it (polled, decoded, checked, buffered; no database in the loop)."""

    name = "null"

    def __init__(self) -> None:
        self.devices = 0
        self.packs = 0
        self.readings = 0
        self.events = 0

    def prepare(self, devices: Sequence[DeviceInfo]) -> None:
        """Nothing to prepare; remembers how many devices were announced."""
        self.devices = len(devices)

    def write(self, pack: Pack) -> None:
        """Count the pack's records."""
        self.packs += 1
        self.readings += len(pack.readings)
        self.events += len(pack.events)

    def write_isolating(self, pack: Pack) -> list[tuple[Record, str]]:
        """Count the pack's records; nothing is ever refused."""
        self.write(pack)
        return []

    def classify(self, exc: BaseException) -> FailureKind:
        """Never raised by this sink; whatever it is, it is not an outage."""
        return "content"

    def error_text(self, exc: BaseException) -> str:
        """The exception's type and text."""
        return f"{type(exc).__name__}: {exc}"

    def counters(self) -> dict[str, int]:
        """Nothing counted beyond what the delivery loop counts."""
        return {}

    def reset(self) -> None:
        """No connections to drop."""

    def close(self) -> None:
        """No connections to close."""
