"""Turns conditions into alert events: one open alert per key, updated, then resolved."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Any, Literal

from agent.checks.base import Condition
from agent.records import Event, alert_event

#: An open alert is refreshed (value, message) at most this often unless severity changes.
UPDATE_EVERY_US = 60_000_000


@dataclass
class OpenAlert:
    """An alert the central DB holds as open."""

    event_key: str
    severity: str
    opened_us: int
    updated_us: int


class AlertTracker:
    """De-duplicates conditions; its open alerts are persisted with the buffer across restarts."""

    def __init__(self, open_alerts: dict[str, dict[str, Any]] | None = None) -> None:
        self.open: dict[str, OpenAlert] = {k: OpenAlert(**v) for k, v in (open_alerts or {}).items()}

    def state(self) -> dict[str, dict[str, Any]]:
        """Serializable open-alert state."""
        return {k: asdict(v) for k, v in self.open.items()}

    def process(self, conditions: Iterable[Condition], ts_us: int) -> list[Event]:
        """Alert events (``op`` open/update/close) for these conditions."""
        events: list[Event] = []
        for c in conditions:
            current = self.open.get(c.key)
            if c.active and current is None:
                opened = OpenAlert(f"{c.key}/{ts_us}", c.severity, ts_us, ts_us)
                self.open[c.key] = opened
                events.append(self._event("open", opened, c, ts_us))
            elif c.active and current is not None and (
                    c.severity != current.severity or ts_us - current.updated_us >= UPDATE_EVERY_US):
                current.severity, current.updated_us = c.severity, ts_us
                events.append(self._event("update", current, c, ts_us))
            elif not c.active and current is not None:
                del self.open[c.key]
                events.append(alert_event({"op": "close", "key": current.event_key, "ts_us": ts_us}))
        return events

    @staticmethod
    def _event(op: Literal["open", "update"], alert: OpenAlert, c: Condition, ts_us: int) -> Event:
        return alert_event({
            "op": op, "key": alert.event_key, "ts_us": ts_us, "device": c.device, "point": c.point,
            "alert_type": c.alert_type, "severity": c.severity, "title": c.title,
            "message": c.message, "value": c.value, "system": c.system})
