"""/health and Prometheus /metrics scraped over HTTP from a running agent."""

from __future__ import annotations

import asyncio
import json
import urllib.error
import urllib.request
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from agent.pipeline.service import Agent
from simulators.power_meter import PowerMeter
from simulators.server import ModbusSimulator, SimulatorThread, free_port
from tests.helpers import async_wait_until, device_map, run_agent

POINTS = [{"name": "power", "address": 12, "type": "float32", "role": "power"},
          {"name": "voltage", "address": 0, "type": "float32", "role": "voltage"}]


def get(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for fam in text_string_to_metric_families(text) for s in fam.samples}


def test_metrics_and_health_describe_the_running_agent(sqlite_url: str, tmp_path: Path) -> None:
    server = ModbusSimulator({1: PowerMeter(seed=1)})
    dead_port = free_port()
    scraped: dict[str, object] = {}

    async def scenario(agent: Agent) -> None:
        await async_wait_until(lambda: agent.device_stats["meter"].polls >= 10 and agent.stats.rows_written > 0)
        port = agent.monitor.port
        scraped["metrics"] = await asyncio.to_thread(get, port, "/metrics")
        scraped["polls"] = agent.device_stats["meter"].polls
        scraped["health"] = await asyncio.to_thread(get, port, "/health")
        scraped["live"] = await asyncio.to_thread(get, port, "/health/live")
        scraped["missing"] = await asyncio.to_thread(get, port, "/nope")

    with SimulatorThread([server]):
        devices = [{"id": "meter", "type": "power_meter", "host": "127.0.0.1", "port": server.port, "unit_id": 1,
                    "interval": "100ms", "timeout": "90ms", "points": POINTS},
                   {"id": "gone", "host": "127.0.0.1", "port": dead_port, "interval": "100ms", "timeout": "90ms",
                    "points": [{"name": "v", "address": 0}]}]
        run_agent(device_map("gw-mon", sqlite_url, str(tmp_path / "buf"), devices), scenario)
    code, text = scraped["metrics"]  # type: ignore[misc]
    assert code == 200
    m = samples(text)
    polls = m[("hacksky_polls_total", (("device", "meter"),))]
    assert 10 <= polls <= scraped["polls"]  # type: ignore[operator]
    assert m[("hacksky_readings_taken_total", (("device", "meter"),))] == 2 * polls
    assert m[("hacksky_poll_duration_seconds_count", ())] >= polls - 1  # gateway-wide histogram
    assert m[("hacksky_device_up", (("device", "meter"), ("state", "up")))] == 1.0
    assert m[("hacksky_device_up", (("device", "gone"), ("state", "down")))] == 0.0
    assert m[("hacksky_poll_errors_total", (("device", "gone"), ("reason", "connection")))] >= 1
    assert m[("hacksky_central_up", ())] == 1.0 and m[("hacksky_rows_written_total", ())] > 0
    assert m[("hacksky_write_duration_seconds_count", ())] >= 1
    assert m[("hacksky_buffer_bytes", ())] > 0 and ("hacksky_buffer_oldest_age_seconds", ()) in m
    code, body = scraped["health"]  # type: ignore[misc]
    health = json.loads(body)
    assert code == 200 and health["ready"] is True
    assert health["checks"] == {"scheduler": "running", "buffer": "writable", "central": "up"}
    assert health["devices"] == {"up": 1, "degraded": 0, "down": 1, "total": 2}
    assert scraped["live"][0] == 200 and scraped["missing"][0] == 404  # type: ignore[index]


def test_health_stays_ready_while_central_is_down_and_says_so(tmp_path: Path) -> None:
    server = ModbusSimulator({1: PowerMeter(seed=2)})
    central = f"mysql+pymysql://nobody@127.0.0.1:{free_port()}/x"
    seen: dict[str, object] = {}

    async def scenario(agent: Agent) -> None:
        await async_wait_until(lambda: agent.stats.central_state == "down" and agent.device_stats["m"].polls > 3)
        seen["health"] = await asyncio.to_thread(get, agent.monitor.port, "/health")
        seen["metrics"] = await asyncio.to_thread(get, agent.monitor.port, "/metrics")

    with SimulatorThread([server]):
        device = {"id": "m", "type": "power_meter", "host": "127.0.0.1", "port": server.port, "unit_id": 1,
                  "interval": "100ms", "timeout": "90ms", "points": POINTS}
        run_agent(device_map("gw-down", central, str(tmp_path / "buf"), [device], connect_timeout="1s"), scenario)
    code, body = seen["health"]  # type: ignore[misc]
    health = json.loads(body)
    assert code == 200 and health["ready"] is True
    assert health["checks"]["central"].startswith("down") and "buffering" in health["checks"]["central"]
    m = samples(seen["metrics"][1])  # type: ignore[index]
    assert m[("hacksky_central_up", ())] == 0.0 and m[("hacksky_buffer_readings", ())] > 0
    assert m[("hacksky_write_errors_total", ())] >= 1


def test_a_port_in_use_does_not_stop_the_agent(sqlite_url: str, tmp_path: Path) -> None:
    import socket

    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    server = ModbusSimulator({1: PowerMeter(seed=3)})

    async def scenario(agent: Agent) -> None:
        await async_wait_until(lambda: agent.device_stats["m"].polls > 3)
        assert agent.monitor.port == 0

    try:
        with SimulatorThread([server]):
            device = {"id": "m", "host": "127.0.0.1", "port": server.port, "unit_id": 1, "interval": "100ms",
                      "timeout": "90ms", "points": POINTS}
            text = device_map("gw-busy", sqlite_url, str(tmp_path / "buf"), [device]).replace(
                "port: 0\n", f"port: {taken.getsockname()[1]}\n")
            agent = run_agent(text, scenario)
    finally:
        taken.close()
    assert agent.stats.rows_written > 0
