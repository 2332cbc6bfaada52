"""The check interface, what checks report, and what they carry across a reload."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple, Protocol

from agent.settings import SignalConfig
from drivers.base import Reading

#: (device id, point name)
PointKey = tuple[str, str]

#: A point's check settings: changing only these keeps what the checks remember of the point.
CHECK_SETTINGS = frozenset({"limits", "stuck_after", "max_rate"})


@dataclass(frozen=True)
class Condition:
    """The state of one watched condition after a poll; ``key`` identifies it across polls."""

    key: str
    active: bool
    alert_type: str = ""
    severity: str = "medium"
    title: str = ""
    message: str = ""
    device: str | None = None
    point: str | None = None
    value: float | None = None
    system: str = "edge-gateway"


class PointMemory(NamedTuple):
    """What a per-point check remembers of a point: its last good value and how long it held."""

    value: float | None  # a text point's value is the hash of its text
    ts_us: int
    unchanged: int = 0  # consecutive polls that read ``value`` again


@dataclass(frozen=True)
class CheckState:
    """A check's per-point memory, handed to the check built for a reloaded device map."""

    memory: Mapping[PointKey, PointMemory] = field(default_factory=dict)
    read_as: Mapping[PointKey, SignalConfig] = field(default_factory=dict)  # each point's config then


def same_reading(before: SignalConfig, after: SignalConfig) -> bool:
    """Whether a point is read the same way (address, type, scaling...) whatever its check settings."""
    settings = set(CHECK_SETTINGS)
    return type(before) is type(after) and before.model_dump(exclude=settings) == after.model_dump(exclude=settings)


class Check(Protocol):
    """Keeps its own state; called once per poll of a device with that poll's readings."""

    def evaluate(self, device: str, readings: Sequence[Reading]) -> Iterable[Condition]:
        """Conditions for the points this check watches (inactive ones too, so alerts clear)."""

    def state(self) -> CheckState:
        """What this check remembers, for its successor after a reload."""

    def restore(self, state: CheckState) -> None:
        """Take over a predecessor's memory (before the first poll) where it still applies."""
