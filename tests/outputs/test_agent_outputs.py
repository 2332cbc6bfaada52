"""The agent with MySQL/SQLite and an MQTT output from one buffer: each fails alone, neither loses a reading."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from sqlalchemy import create_engine, text

from agent.pipeline.service import Agent
from simulators.server import free_port
from tests.agent.test_monitor import get, samples
from tests.faults.plant import plant
from tests.helpers import TcpProxy, async_wait_until, device_map, run_agent
from tests.infra.private_mosquitto import PrivateMosquitto
from tests.outputs.consumer import Host, Received

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def with_outputs(yaml_text: str, *outputs: dict[str, Any]) -> str:
    doc = yaml.safe_load(yaml_text)
    doc["outputs"] = list(outputs)
    return yaml.safe_dump(doc, sort_keys=False)


def central_keys(url: str) -> set[tuple[str, str, int]]:
    """(device, point, acquisition time in ms) of every stored reading."""
    engine = create_engine(url)
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT d.device_id_str, r.point, r.ts FROM readings r "
                                 "JOIN devices d ON d.id = r.device_id")).fetchall()
    engine.dispose()
    return {(device, point, _ms(ts)) for device, point, ts in rows}


def _ms(ts: datetime) -> int:
    """Milliseconds since the epoch, truncated as Sparkplug timestamps are."""
    return (ts.replace(tzinfo=UTC) - EPOCH) // timedelta(milliseconds=1)


def sparkplug_keys(messages: list[Received]) -> tuple[list[tuple[str, str, int]], list[bool]]:
    """(device, point, timestamp) of every DDATA metric, aliases resolved through the DBIRTHs before it;
    and each one's is_historical flag."""
    names: dict[int, str] = {}
    keys, historical = [], []
    for m in messages:
        if m.kind == "DBIRTH":
            names.update({metric.alias: metric.name for metric in m.payload.metrics})
        elif m.kind == "DDATA":
            for metric in m.payload.metrics:
                keys.append((m.device or "", names[metric.alias], metric.timestamp))
                historical.append(metric.is_historical)
    return keys, historical


@pytest.mark.parametrize("writer", ["thread", "process"])
def test_a_broker_outage_buffers_for_mqtt_alone_and_both_outputs_get_every_reading(
        writer: str, mariadb_url: str, tmp_path: Path) -> None:
    broker = PrivateMosquitto(tmp_path / "mosquitto")
    broker.start()
    try:
        with plant(meters=3) as p, Host(broker.port) as host:
            proxy = TcpProxy("127.0.0.1", broker.port, port=free_port())
            yaml_text = device_map("gw-mqtt", mariadb_url, str(tmp_path / "buf"), p.devices("100ms"),
                                   writer=writer)
            state: dict[str, Any] = {}

            async def scenario(agent: Agent) -> None:
                await proxy.start()  # the agent's first connection attempts were refused: it retries
                mqtt = agent.stats.outputs["mqtt"]
                await async_wait_until(lambda: mqtt.readings > 200 and mqtt.state == "up")
                proxy.cut()
                await async_wait_until(lambda: mqtt.state == "down")
                await asyncio.sleep(1.0)  # readings wait for the broker meanwhile
                state["down"] = samples((await asyncio.to_thread(get, agent.monitor.port, "/metrics"))[1])
                state["status"] = agent.snapshot()["outputs"]["mqtt"]
                written = agent.stats.rows_written
                # the broker's outage does not hold the central writes back
                await async_wait_until(lambda: agent.stats.rows_written > written + 300
                                       and agent.stats.central_state == "up")
                state["central_during_outage"] = agent.stats.rows_written - written
                proxy.restore()
                await async_wait_until(lambda: mqtt.state == "up", timeout=30)
                await async_wait_until(lambda: agent.delivery.buffer is not None
                                       and agent.delivery.buffer.pending["mqtt"] < 100, timeout=30)

            agent = run_agent(with_outputs(yaml_text, {"type": "mqtt", "url": f"mqtt://127.0.0.1:{proxy.port}",
                                                       "group_id": "plant", "flush_interval": "100ms"}), scenario)
    finally:
        broker.stop()
    assert state["central_during_outage"] > 300
    down, status = state["down"], state["status"]
    label = (("output", "mqtt"),)
    assert down["hacksky_output_up", label] == 0.0 and down["hacksky_central_up", ()] == 1.0
    assert down["hacksky_output_pending_readings", label] > 0
    assert down["hacksky_output_oldest_pending_age_seconds", label] >= 1.0
    assert down["hacksky_output_published_readings_total", label] > 200
    assert down["hacksky_output_dropped_readings_total", label] == 0.0, "the buffer had room"
    assert status["state"] == "down" and status["pending"] > 0 and "127.0.0.1" in status["error"]
    stored = central_keys(mariadb_url)
    published, historical = sparkplug_keys(host.snapshot())
    assert len(stored) == agent.stats.readings_taken
    missing, extra = stored - set(published), set(published) - stored
    assert not missing and not extra, (sorted(missing)[:5], len(missing), sorted(extra)[:5], len(extra))
    assert any(historical), "the backlog of the outage was published as historical"
    live = [key for key, old in zip(published, historical, strict=True) if not old]
    assert len(live) == len(set(live)), "a pack published again after the cut is historical: live, once"
    deaths = host.of("NDEATH")
    assert deaths and deaths[0].payload.metrics[0].long_value == 0, "the will of session 0 on the cut"
