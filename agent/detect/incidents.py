"""Verdicts -> one attack detection per incident (opened, updated while it lasts, closed) + its alert."""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from agent.detect.stream import Finding, Verdict
from agent.records import Event, alert_event, attack_event

log = logging.getLogger(__name__)

#: finding kind -> attack type, strongest evidence first
ATTACK_TYPES = [
    ("replay", "Replay"),
    ("control", "Flow Manipulation"), ("actuator", "Flow Manipulation"), ("mass_balance", "Flow Manipulation"),
    ("pressure", "Sensor Tampering"), ("frozen", "Sensor Tampering"), ("range", "Sensor Tampering"),
    ("rate", "Sensor Tampering"),
    ("residual", "Process Anomaly"), ("baseline", "Process Anomaly"),
    # power meters (agent.detect.meters): a phase out of line is injected data; the rest says a register lies
    ("phase_balance", "False Data Injection"), ("physics", "Meter Tampering"), ("energy", "Meter Tampering"),
    ("feeder", "Meter Tampering"), ("load_profile", "Load Anomaly"),
]
#: an open detection is refreshed at most this often unless its threat level changes
UPDATE_EVERY_US = 60_000_000


def attack_type(findings: tuple[Finding, ...] | list[Finding]) -> str:
    """The attack type the strongest kind of evidence points to."""
    kinds = {f.kind for f in findings}
    return next((name for kind, name in ATTACK_TYPES if kind in kinds), "Process Anomaly")


def confidence(verdict: Verdict) -> float:
    """0-100: 50 at the threshold, rising with the score and with independent kinds of evidence."""
    base = 100 * (1 - 0.5 / max(verdict.score, 1.0))
    corroboration = 10 * (len({f.kind for f in verdict.findings}) - 1)
    return round(min(99.0, base + corroboration), 1)


def threat_level(conf: float) -> str:
    """Severity of a detection (and of its alert) from its confidence."""
    return "critical" if conf >= 90 else "high" if conf >= 75 else "medium" if conf >= 60 else "low"


def indicators(findings: tuple[Finding, ...] | list[Finding]) -> list[dict[str, Any]]:
    """JSON-ready evidence: which check fired, on which signals, by how much."""
    return [{"check": f.kind, "name": f.name, "signals": list(f.signals), "score": round(f.score, 2), **f.detail}
            for f in findings]


@dataclass
class OpenIncident:
    """The incident the central DB holds as open."""

    key: str
    opened_us: int
    attack_type: str
    confidence: float
    updated_us: int
    quiet: int = 0
    alerted: bool = False
    signals: list[str] = field(default_factory=list)


class IncidentTracker:
    """Turns a stream of verdicts into attack/alert events; one incident at a time per detector."""

    def __init__(self, name: str, target_system: str, clear_after: int, alert_from: float,
                 state: dict[str, Any] | None = None) -> None:
        self.name, self.target_system = name, target_system
        self.clear_after, self.alert_from = clear_after, alert_from
        self.open: OpenIncident | None = OpenIncident(**state) if state else None
        self.opened = 0

    def state(self) -> dict[str, Any] | None:
        """Serializable state (persisted with the buffer so a restart keeps the incident open)."""
        return asdict(self.open) if self.open else None

    def process(self, verdict: Verdict, ts_us: int) -> list[Event]:
        """Events for this verdict (often none)."""
        inc = self.open
        if not verdict.alarm:
            if inc is None:
                return []
            inc.quiet += 1
            if inc.quiet < self.clear_after:
                return []
            self.open = None
            log.info("%s on %s cleared after %d quiet rows", inc.attack_type, self.target_system, inc.quiet)
            closing = [attack_event({"op": "close", "key": inc.key, "ts_us": ts_us})]
            if inc.alerted:
                closing.append(alert_event({"op": "close", "key": inc.key, "ts_us": ts_us}))
            return closing
        conf = confidence(verdict)
        if inc is None:
            inc = OpenIncident(f"detection/{self.name}/{ts_us}", ts_us, attack_type(verdict.findings), conf, ts_us)
            self.open = inc
            self.opened += 1
            log.warning("%s suspected on %s (confidence %.0f): %s", inc.attack_type, self.target_system, conf,
                        "; ".join(f"{f.kind} {f.name} {f.detail}" for f in verdict.findings))
            return self._events("open", inc, verdict, conf, ts_us)
        inc.quiet = 0
        stronger = threat_level(conf) != threat_level(inc.confidence) and conf > inc.confidence
        if stronger or ts_us - inc.updated_us >= UPDATE_EVERY_US:
            inc.confidence, inc.updated_us = max(conf, inc.confidence), ts_us
            return self._events("update", inc, verdict, inc.confidence, ts_us)
        return []

    def _events(self, op: Literal["open", "update"], inc: OpenIncident, verdict: Verdict, conf: float,
                ts_us: int) -> list[Event]:
        signals = sorted({s for f in verdict.findings for s in f.signals})
        inc.signals = sorted(set(inc.signals) | set(signals))
        level = threat_level(conf)
        description = (f"{inc.attack_type} suspected on {self.target_system}: "
                       + "; ".join(f"{f.kind} {f.name} (score {f.score:.1f})" for f in verdict.findings[:4]))
        events = [attack_event({
            "op": op, "key": inc.key, "ts_us": ts_us, "opened_us": inc.opened_us, "attack_type": inc.attack_type,
            "confidence": conf, "threat_level": level, "target_system": self.target_system,
            "description": description, "indicators": {"signals": inc.signals,
                                                       "findings": indicators(verdict.findings)}})]
        if conf >= self.alert_from:
            alert_op = op if inc.alerted else "open"
            inc.alerted = True
            events.append(alert_event({
                "op": alert_op, "key": inc.key, "ts_us": ts_us, "device": None, "point": None,
                "alert_type": "attack_detected", "severity": level,
                "title": f"{inc.attack_type} suspected on {self.target_system}"[:255],
                "message": description, "value": conf, "system": "edge-detection"}))
        return events
