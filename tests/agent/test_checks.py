"""Built-in checks and the alert tracker: fire on their condition, stay quiet otherwise."""

from __future__ import annotations

from pathlib import Path

from agent.checks import AlertTracker, CheckEngine, build_checks
from agent.checks.point_checks import CommunicationCheck, LimitCheck, RateCheck, StuckCheck
from agent.configload import load_config_text
from agent.settings import AgentConfig, Limits, PointConfig
from drivers.base import Reading
from tests.helpers import device_map

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


def test_reload_keeps_stuck_and_rate_memory_of_points_read_as_before_and_forgets_moved_ones(tmp_path: Path) -> None:
    """What a reload carries, pinned: a point read the same way keeps its stuck count and last value
    (even when its device's interval or the point's own check settings change); a point read from
    elsewhere (another address, type, scaling...) starts afresh, as does one that lost the check."""
    def device_map_with(interval: str, points: list[dict[str, object]]) -> AgentConfig:
        device = {"id": "d", "host": "127.0.0.1", "port": 502, "unit_id": 1, "interval": interval, "points": points}
        return load_config_text(device_map("gw", f"sqlite:///{tmp_path / 'c.db'}", str(tmp_path / "buf"), [device]))

    watched = {"type": "float32", "stuck_after": 3, "max_rate": 1.0}
    before = device_map_with("200ms", [{"name": "same", "address": 0, **watched},
                                       {"name": "moved", "address": 2, **watched},
                                       {"name": "unwatched", "address": 6, **watched}])
    after = device_map_with("500ms", [{"name": "same", "address": 0, **watched, "limits": {"max": 100}},
                                      {"name": "moved", "address": 4, **watched},
                                      {"name": "unwatched", "address": 6, "type": "float32"}])
    engine = CheckEngine(build_checks(before))
    points = ("same", "moved", "unwatched")
    for t in (0, 1):
        engine.evaluate("d", [r(7.0, t, p) for p in points])
    engine = engine.reconfigured(after)
    conditions = {c.key: c.active for c in engine.evaluate("d", [r(7.0, 2, p) for p in points])}
    assert conditions["stuck/d/same"], "third unchanged poll, two of them before the reload"
    assert conditions["rate/d/same"] is False, "a rate from the value read before the reload"
    assert conditions["stuck/d/moved"] is False and "rate/d/moved" not in conditions, "a first reading again"
    assert not any("unwatched" in key for key in conditions)
    engine = engine.reconfigured(before)
    conditions = {c.key: c.active for c in engine.evaluate("d", [r(7.0, 3, p) for p in points])}
    assert conditions["stuck/d/same"] and conditions["stuck/d/moved"] is False
    assert conditions["stuck/d/unwatched"] is False and "rate/d/unwatched" not in conditions, "its memory was dropped"
