"""Built-in checks and the alert tracker: fire on their condition, stay quiet otherwise."""

from __future__ import annotations

from agent.checks import AlertTracker
from agent.checks.point_checks import CommunicationCheck, LimitCheck, RateCheck, StuckCheck
from agent.settings import Limits, PointConfig
from drivers.base import Reading

S = 1_000_000


def r(value: float | None, t: int, point: str = "p", quality: str = "good") -> Reading:
    return Reading("d", point, t * S, value, None, quality)


def cfg(**kw: object) -> dict[str, dict[str, PointConfig]]:
    return {"d": {"p": PointConfig(name="p", address=0, type="float32", **kw)}}  # type: ignore[arg-type]


def test_limits() -> None:
    check = LimitCheck(cfg(limits=Limits(min=0, max=10, severity="critical"), unit="bar"))
    states = [c.active for v in (5, 11, -1, 9) for c in check.evaluate("d", [r(v, 0)])]
    assert states == [False, True, True, False]
    (high,) = check.evaluate("d", [r(12.5, 0)])
    assert high.severity == "critical" and high.message == "d p = 12.5 bar is above max 10 bar"
    assert list(check.evaluate("d", [r(None, 0, quality="bad:timeout")])) == []


def test_stuck_after_n_unchanged_polls() -> None:
    check = StuckCheck(cfg(stuck_after=3))
    states = [c.active for t, v in enumerate([1, 2, 2, 2, 2, 3]) for c in check.evaluate("d", [r(v, t)])]
    assert states == [False, False, False, True, True, False]


def test_rate_of_change() -> None:
    check = RateCheck(cfg(max_rate=1.0))
    out = [c.active for t, v in [(0, 0.0), (1, 0.5), (2, 3.0), (4, 3.5)] for c in check.evaluate("d", [r(v, t)])]
    assert out == [False, True, False]


def test_communication_check_fires_only_when_every_read_failed() -> None:
    check = CommunicationCheck()
    (ok,) = check.evaluate("d", [r(1, 0), r(None, 0, "q", "bad:exception:2")])
    (down,) = check.evaluate("d", [r(None, 0, quality="bad:timeout"), r(None, 0, "q", "bad:timeout")])
    assert not ok.active and down.active and "timeout" in down.message


def test_tracker_opens_once_updates_then_closes_and_survives_restart() -> None:
    check = LimitCheck(cfg(limits=Limits(max=10)))
    tracker = AlertTracker()
    ops = []
    for t, v in enumerate([11, 12, 13]):
        ops += [e.payload["op"] for e in tracker.process(check.evaluate("d", [r(v, t)]), t * S)]
    assert ops == ["open"], "one open alert while the condition holds"
    later = tracker.process(check.evaluate("d", [r(14, 100)]), 100 * S)
    assert [e.payload["op"] for e in later] == ["update"]
    restored = AlertTracker(tracker.state())
    closing = restored.process(check.evaluate("d", [r(5, 101)]), 101 * S)
    assert [e.payload["op"] for e in closing] == ["close"]
    assert closing[0].payload["key"] == later[0].payload["key"]
    assert restored.open == {}
