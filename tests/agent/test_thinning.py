"""Report by exception: deadband and heartbeat thin what is stored, never what the checks see."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.configload import ConfigError, load_config_text
from agent.pipeline.service import Agent
from agent.pipeline.thinning import DEFAULT_HEARTBEAT, StoreRule, Thinning, rule_for
from drivers.base import Reading
from simulators.power_meter import PowerMeter
from simulators.server import ModbusSimulator, SimulatorThread
from tests.helpers import async_wait_until, device_map, query, run_agent

S = 1_000_000  # µs


def config(points: str, device: str = "") -> Thinning:
    cfg = load_config_text(f"""gateway: {{id: gw}}
devices:
  - id: d
    host: 127.0.0.1{device}
    points:
{points}
""")
    return Thinning(cfg.devices)


def test_each_point_takes_its_own_rule_else_its_devices() -> None:
    cfg = load_config_text("""gateway: {id: gw}
devices:
  - id: m
    host: 127.0.0.1
    deadband: 2%
    heartbeat: 5m
    points:
      - {name: a, address: 0}
      - {name: b, address: 1, deadband: 0.5}
      - {name: c, address: 2, heartbeat: 10s}
  - id: n
    host: 127.0.0.1
    points:
      - {name: a, address: 0}
      - {name: b, address: 1, deadband: 1.5}
      - {name: c, address: 2, heartbeat: 1m}
  - id: ua
    protocol: opcua
    endpoint: opc.tcp://127.0.0.1:4840
    points:
      - {name: abs, node: "ns=2;i=1", deadband: {type: absolute, value: 0.25}}
      - {name: pct, node: "ns=2;i=2", deadband: {type: percent, value: 1}}
""")
    m, n, ua = cfg.devices
    rules = {(d.id, p.name): rule_for(p, d) for d in (m, n, ua) for p in d.points}
    assert rules == {
        ("m", "a"): StoreRule(0.0, 2.0, 300 * S), ("m", "b"): StoreRule(0.5, 0.0, 300 * S),
        ("m", "c"): StoreRule(0.0, 2.0, 10 * S),
        ("n", "a"): None, ("n", "b"): StoreRule(1.5, 0.0, int(DEFAULT_HEARTBEAT * S)),
        ("n", "c"): StoreRule(0.0, 0.0, 60 * S),  # a heartbeat alone: every change is stored
        ("ua", "abs"): StoreRule(0.25, 0.0, int(DEFAULT_HEARTBEAT * S)),
        # a percent of the server's EURange is the server's filter: here, every change it sends is stored
        ("ua", "pct"): StoreRule(0.0, 0.0, int(DEFAULT_HEARTBEAT * S)),
    }


def test_a_wrong_deadband_names_its_place() -> None:
    with pytest.raises(ConfigError) as err:
        config("      - {name: a, address: 0, deadband: lots}")
    assert "devices[0].points[0].deadband: Value error, 'lots' is not a change such as 0.5 or 2%" in str(err.value)
    with pytest.raises(ConfigError) as err:
        config("      - {name: a, address: 0, deadband: 150%}")
    assert "devices[0].points[0].deadband.percent" in str(err.value)


def readings(*values: tuple[int, float | None, str]) -> Iterator[list[Reading]]:
    for ts, value, quality in values:
        yield [Reading("d", "a", ts * S, value, None, quality)]


def test_drift_is_stored_once_it_adds_up_and_the_heartbeat_keeps_its_own_time() -> None:
    thin = config("      - {name: a, address: 0, deadband: 0.5, heartbeat: 10s}")
    polls = readings((0, 10.0, "good"), (1, 10.3, "good"), (2, 10.45, "good"), (3, 10.6, "good"),
                     (4, 10.7, "good"), (5, None, "bad:timeout"), (6, None, "bad:timeout"), (7, 10.7, "good"),
                     (8, 10.8, "good"), (17, 10.9, "good"), (18, 10.9, "good"))
    stored = [r for poll in polls for r in thin.keep("d", poll)]
    # 10.6 is 0.6 from the last stored 10.0 (each step alone was below 0.5); every bad reading and the
    # return to good are stored; 17 s is 10 s after the last stored (7 s): a heartbeat, at its own time
    assert [(r.ts_us // S, r.value) for r in stored] == [
        (0, 10.0), (3, 10.6), (5, None), (6, None), (7, 10.7), (17, 10.9)]
    assert len(stored) == 11 - 5


def test_a_devices_band_leaves_its_bits_alone_and_a_move_of_exactly_the_band_is_stored() -> None:
    thin = config("      - {name: a, address: 0}\n      - {name: breaker, table: coil, address: 0, type: bool}",
                  device="\n    deadband: 1")
    polls = [[Reading("d", "a", t * S, a), Reading("d", "breaker", t * S, b)]
             for t, a, b in ((0, 10.0, 1.0), (1, 10.5, 0.0), (2, 11.0, 1.0), (3, 11.0, 1.0), (4, 11.9, 0.0))]
    stored = [[(r.point, r.value) for r in thin.keep("d", poll)] for poll in polls]
    assert stored == [[("a", 10.0), ("breaker", 1.0)], [("breaker", 0.0)], [("a", 11.0), ("breaker", 1.0)], [],
                      [("breaker", 0.0)]]


def test_a_percent_band_is_of_the_last_stored_value_and_text_is_stored_on_change() -> None:
    thin = config("      - {name: a, address: 0, deadband: 10%}\n      - {name: s, address: 1, type: string, "
                  "length: 2, heartbeat: 1h}")
    kept = [thin.keep("d", [Reading("d", "a", t * S, v), Reading("d", "s", t * S, None, text)])
            for t, v, text in ((0, 100.0, "on"), (1, 109.0, "on"), (2, 111.0, "off"), (3, 121.0, "off"),
                               (4, 123.0, "off"))]
    assert [[(r.point, r.value or r.text) for r in poll] for poll in kept] == [
        [("a", 100.0), ("s", "on")], [], [("a", 111.0), ("s", "off")], [], [("a", 123.0)]]


@pytest.fixture
def meter() -> Iterator[ModbusSimulator]:
    sim = ModbusSimulator({1: PowerMeter(seed=1, start=0)})
    with SimulatorThread([sim]):
        yield sim


def test_the_agent_stores_a_quiet_point_once_and_checks_still_see_every_sample(
        meter: ModbusSimulator, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'central.db'}"
    points = [{"name": "voltage", "address": 0, "type": "float32", "role": "voltage", "deadband": 50,
               "heartbeat": "1h", "limits": {"max": 100}},
              {"name": "power", "address": 12, "type": "float32", "role": "power"}]
    text = device_map("gw-rbe", url, str(tmp_path / "buf"), [
        {"id": "meter", "type": "power_meter", "host": "127.0.0.1", "port": meter.port, "points": points}])
    taken: dict[str, int] = {}

    async def scenario(agent: Agent) -> None:
        await async_wait_until(lambda: agent.device_stats["meter"].polls >= 10)
        await async_wait_until(lambda: agent.stats.rows_written == agent.stats.readings_taken
                               - agent.stats.readings_thinned)
        taken["polls"] = agent.device_stats["meter"].polls
        taken["thinned"] = agent.stats.readings_thinned

    run_agent(text, scenario)
    rows = dict(query(url, "SELECT point, count(*) FROM readings GROUP BY point"))
    assert rows["voltage"] == 1 and rows["power"] >= taken["polls"]
    assert taken["thinned"] >= taken["polls"] - 1
    # the power rows (one per poll) and the limit check are fed every sample, thinned or not
    (power_rows,) = query(url, "SELECT count(*) FROM power_readings WHERE voltage > 200")[0]
    assert power_rows >= taken["polls"]
    assert query(url, "SELECT alert_type FROM alerts") == [("limit_violation",)]
