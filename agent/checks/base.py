"""The check interface and what checks report."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol

from drivers.base import Reading


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


class Check(Protocol):
    """Keeps its own state; called once per poll of a device with that poll's readings."""

    def evaluate(self, device: str, readings: Sequence[Reading]) -> Iterable[Condition]:
        """Conditions for the points this check watches (inactive ones too, so alerts clear)."""
