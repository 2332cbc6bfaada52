"""One attack detection per incident: opened, updated while it lasts, closed when it clears."""

from __future__ import annotations

from agent.detect.incidents import IncidentTracker, attack_type, confidence, threat_level
from agent.detect.stream import Finding, Verdict

QUIET = Verdict(False, 0.3)


def alarm(score: float, *kinds: str) -> Verdict:
    return Verdict(True, score, tuple(Finding(k, f"{k} check", ("L_T1",), score) for k in kinds))


def test_incident_opens_once_updates_and_closes_after_quiet_rows() -> None:
    t = IncidentTracker("process", "C-Town", clear_after=3, alert_from=50)
    events = t.process(alarm(1.2, "residual"), 1_000)
    assert [(e.kind, e.payload["op"]) for e in events] == [("attack", "open"), ("alert", "open")]
    opened = events[0].payload
    assert opened["attack_type"] == "Process Anomaly" and opened["threat_level"] == "low"
    assert opened["indicators"]["findings"][0]["check"] == "residual"
    assert t.process(alarm(1.2, "residual"), 2_000) == []            # same incident, nothing new to say
    stronger = t.process(alarm(6.0, "residual", "mass_balance"), 3_000)
    assert [e.payload["op"] for e in stronger] == ["update", "update"]
    assert stronger[0].payload["threat_level"] == "critical"
    assert stronger[0].payload["key"] == opened["key"]
    assert t.process(QUIET, 4_000) == [] and t.process(QUIET, 5_000) == []
    closed = t.process(QUIET, 6_000)
    assert [(e.kind, e.payload["op"]) for e in closed] == [("attack", "close"), ("alert", "close")]
    assert t.open is None
    assert t.process(alarm(1.5, "replay"), 7_000)[0].payload["key"] != opened["key"]  # a new incident


def test_an_alarm_between_quiet_rows_keeps_the_incident_open() -> None:
    t = IncidentTracker("process", "plant", clear_after=3, alert_from=50)
    t.process(alarm(2, "control"), 1)
    for ts in range(2, 20):
        assert all(e.payload["op"] != "close" for e in t.process(QUIET if ts % 3 else alarm(2, "control"), ts))
    assert t.open is not None


def test_weak_detection_is_recorded_without_alert_until_it_grows() -> None:
    t = IncidentTracker("process", "plant", clear_after=2, alert_from=80)
    assert [e.kind for e in t.process(alarm(1.1, "residual"), 1)] == ["attack"]
    grown = t.process(alarm(8.0, "residual", "pressure"), 2)
    assert [(e.kind, e.payload["op"]) for e in grown] == [("attack", "update"), ("alert", "open")]


def test_incident_survives_a_restart_through_its_state() -> None:
    t = IncidentTracker("process", "plant", clear_after=2, alert_from=50)
    key = t.process(alarm(3, "mass_balance"), 1)[0].payload["key"]
    again = IncidentTracker("process", "plant", clear_after=2, alert_from=50, state=t.state())
    again.process(QUIET, 2)
    assert again.process(QUIET, 3)[0].payload == {"op": "close", "key": key, "ts_us": 3}


def test_attack_type_confidence_and_threat_level() -> None:
    assert attack_type([Finding("residual", "", (), 2), Finding("replay", "", (), 2)]) == "Replay"
    assert attack_type([Finding("pressure", "", (), 2), Finding("mass_balance", "", (), 2)]) == "Flow Manipulation"
    assert confidence(alarm(1.0, "residual")) == 50.0
    assert confidence(alarm(100.0, "residual", "pressure", "control")) == 99.0
    assert [threat_level(c) for c in (50, 60, 75, 90)] == ["low", "medium", "high", "critical"]
