"""Fleet health: the gateway's ``gateways`` row, its clock against central's, and /api/gateways."""

from __future__ import annotations

import asyncio
import hashlib
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, select
from sqlalchemy.engine import Engine

import agent
from agent.api import queries
from agent.buffer.disk import Pack
from agent.central import schema
from agent.central import writer as writer_module
from agent.central.writer import CentralWriter, to_datetime
from agent.configload import load_config_text
from agent.pipeline.fleet import CLOCK_UNCERTAIN
from agent.pipeline.service import Agent
from agent.records import GatewayBeat, gateway_event
from simulators.power_meter import PowerMeter
from simulators.server import ModbusSimulator, SimulatorThread
from tests.helpers import async_wait_until, device_map, query, run_agent

T0 = 1_780_000_000_000_000  # µs, a pinned instant (2026-05-28)


def beat(seq: int, ts_us: int, started_us: int = T0, reload: tuple[int, str] | None = None,
         offset: float | None = 0.012) -> GatewayBeat:
    return {"ts_us": ts_us, "seq": seq, "version": "9.9.9", "map_hash": "ab" * 32, "host": "plant-gw",
            "started_us": started_us, "interval_s": 60.0, "devices_up": 3 + seq, "devices_degraded": 1,
            "devices_down": 0, "buffer_readings": 10 * seq, "clock_offset_s": offset,
            "reload_us": reload[0] if reload else None, "reload_result": reload[1] if reload else None,
            "stopped": False}


def gateway_row(engine: Engine, gateway: str = "gw-fleet") -> Any:
    with engine.connect() as conn:
        return conn.execute(select(schema.gateways).where(schema.gateways.c.gateway_id == gateway)).one()


def test_heartbeats_keep_one_row_per_gateway_newest_beat_of_a_run_wins(migrated_engine: Engine) -> None:
    writer = CentralWriter(migrated_engine, "gw-fleet")
    writer.sync_devices([])
    second = beat(2, T0 + 120_000_000, reload=(T0 + 90_000_000, "applied: 1 added, 0 removed, 0 changed"))
    writer.write(Pack(events=[gateway_event(beat(1, T0 + 60_000_000)), gateway_event(second)]))
    row = gateway_row(migrated_engine)
    assert (row.agent_version, row.device_map_hash, row.host, row.beat_seq) == ("9.9.9", "ab" * 32, "plant-gw", 2)
    assert (row.started_at, row.last_seen) == (to_datetime(T0), to_datetime(T0 + 120_000_000))
    assert (row.devices_up, row.devices_degraded, row.devices_down, row.buffer_readings) == (5, 1, 0, 20)
    assert row.heartbeat_interval == 60.0 and row.clock_offset == pytest.approx(0.012)
    assert (row.last_reload_at, row.last_reload_result) == (to_datetime(T0 + 90_000_000),
                                                           "applied: 1 added, 0 removed, 0 changed")

    # a pack written late (parallel writes commit out of order) does not move the row back
    writer.write(Pack(events=[gateway_event(beat(1, T0 + 60_000_000))]))
    assert gateway_row(migrated_engine).beat_seq == 2
    # a clock stepped back by NTP: the run's next beat still wins, though its time stamp is older
    writer.write(Pack(events=[gateway_event(beat(3, T0 + 30_000_000, offset=None))]))
    row = gateway_row(migrated_engine)
    assert (row.beat_seq, row.last_seen, row.clock_offset) == (3, to_datetime(T0 + 30_000_000), None)
    assert row.last_reload_result == "applied: 1 added, 0 removed, 0 changed", "kept until the next reload"
    # a restart: a new run starts its own sequence
    writer.write(Pack(events=[gateway_event(beat(1, T0 + 200_000_000, started_us=T0 + 190_000_000))]))
    row = gateway_row(migrated_engine)
    assert (row.beat_seq, row.started_at) == (1, to_datetime(T0 + 190_000_000))
    with migrated_engine.connect() as conn:
        assert conn.execute(select(schema.gateways.c.gateway_id)).scalars().all() == ["gw-fleet"]
    # a clean stop says so; the next start clears it
    writer.write(Pack(events=[gateway_event({**beat(2, T0 + 210_000_000, started_us=T0 + 190_000_000),
                                             "stopped": True})]))
    assert gateway_row(migrated_engine).stopped_at == to_datetime(T0 + 210_000_000)
    writer.write(Pack(events=[gateway_event(beat(1, T0 + 300_000_000, started_us=T0 + 290_000_000))]))
    assert gateway_row(migrated_engine).stopped_at is None


def test_gateway_status_by_heartbeat_age_against_its_own_interval(migrated_engine: Engine) -> None:
    writer = CentralWriter(migrated_engine, "gw-fleet")
    writer.sync_devices([])
    writer.write(Pack(events=[gateway_event(beat(1, T0))]))
    seen = to_datetime(T0)
    with migrated_engine.connect() as conn:
        states = [queries.fleet(conn, seen + timedelta(seconds=age))["items"][0]["status"]
                  for age in (-5, 0, 149.9, 151, 599.9, 601)]
        assert states == ["online", "online", "online", "stale", "stale", "offline"]
        assert queries.fleet(conn, seen + timedelta(seconds=1000), "online")["items"] == []
        # a gateway whose clock runs 120 s ahead stamps its beats in the future: judged by when it spoke
        assert queries.gateway_status(seen, 60.0, seen + timedelta(seconds=40), clock_offset=120.0) == "stale"
        status = queries.system_status(conn, seen + timedelta(seconds=30))
    fleet = {g["gateway_id"]: g for g in status["gateways"]}["gw-fleet"]["fleet"]
    assert fleet["status"] == "online" and fleet["last_seen_age_s"] == 30.012 and fleet["agent_version"] == "9.9.9"


def test_the_writer_measures_the_gateway_clock_against_the_database(central_url: str) -> None:
    engine = create_engine(central_url)
    try:
        from agent.central import migrate
        migrate.upgrade(engine)
        writer = CentralWriter(engine, "gw-clock")
        writer.sync_devices([])
        writer.write(Pack())
        if engine.dialect.name == "sqlite":
            assert writer.clock_offset is None, "an embedded file shares the gateway's clock: nothing to measure"
        else:
            assert writer.clock_offset is not None and abs(writer.clock_offset) < 1.0, "the same machine's clock"
    finally:
        engine.dispose()


POINTS = [{"name": "power", "address": 12, "type": "float32", "role": "power"}]


def test_a_gateway_clock_off_from_central_alerts_and_marks_readings_until_it_agrees(
        mariadb_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The gateway's clock pinned 30 s ahead of the database's, then set right (as NTP would)."""
    skew = [30.0]
    real_time, real_ns = time.time, time.time_ns
    monkeypatch.setattr(time, "time", lambda: real_time() + skew[0])
    monkeypatch.setattr(time, "time_ns", lambda: real_ns() + int(skew[0] * 1e9))
    monkeypatch.setattr(writer_module, "CLOCK_CHECK_EVERY", 0.2)
    server = ModbusSimulator({1: PowerMeter(seed=1)})
    seen: dict[str, Any] = {}

    async def scenario(agent_: Agent) -> None:
        await async_wait_until(lambda: "gateway/clock" in agent_.tracker.open)
        seen["offset"] = agent_.stats.clock_offset
        await async_wait_until(lambda: agent_.stats.rows_written >= 20)
        skew[0] = 0.0
        await async_wait_until(lambda: "gateway/clock" not in agent_.tracker.open)
        seen["agreed_us"] = real_ns() // 1000
        polls = agent_.device_stats["meter"].polls
        await async_wait_until(lambda: agent_.device_stats["meter"].polls >= polls + 5)
        await asyncio.sleep(1.2)  # a heartbeat after the clocks agree (metrics_interval 1 s)
        await async_wait_until(lambda: agent_.stats.central_state == "up" and not agent_.delivery.buffer.event_rows
                               and not agent_.delivery.buffer.reading_rows)

    with SimulatorThread([server]):
        text = device_map("gw-fleet", mariadb_url, str(tmp_path / "buf"), [
            {"id": "meter", "type": "power_meter", "host": "127.0.0.1", "port": server.port, "unit_id": 1,
             "interval": "100ms", "timeout": "90ms", "points": POINTS}], metrics_interval="1s")
        assert load_config_text(text).map_hash() == hashlib.sha256(text.encode()).hexdigest()
        run_agent(text, scenario)

    assert seen["offset"] == pytest.approx(30.0, abs=1.0)
    alerts = query(mariadb_url, "SELECT alert_type, severity, resolved, last_value FROM alerts "
                                "WHERE alert_type = 'clock_offset'")
    assert len(alerts) == 1 and alerts[0][:3] == ("clock_offset", "high", 1)
    assert alerts[0][3] == pytest.approx(30.0, abs=1.0)
    qualities = dict(query(mariadb_url, "SELECT quality, count(*) FROM readings GROUP BY quality"))
    assert qualities.get(CLOCK_UNCERTAIN, 0) >= 10 and qualities.get("good", 0) >= 5, qualities
    # the readings taken after the clocks agreed (the skewed ones are stamped 30 s later than these)
    agreed = seen["agreed_us"]
    after = dict(query(mariadb_url, f"""SELECT quality, count(*) FROM readings WHERE ts >= '{to_datetime(agreed)}'
        AND ts < '{to_datetime(agreed + 20_000_000)}' GROUP BY quality"""))
    assert list(after) == ["good"] and after["good"] >= 5, after
    row = query(mariadb_url, "SELECT agent_version, device_map_hash, stopped_at IS NOT NULL, clock_offset, "
                             "beat_seq, heartbeat_interval FROM gateways WHERE gateway_id = 'gw-fleet'")[0]
    assert row[:3] == (agent.__version__, hashlib.sha256(text.encode()).hexdigest(), 1)
    assert abs(row[3]) < 2.0 and row[4] >= 3 and row[5] == 1.0
    (metric,) = query(mariadb_url, "SELECT count(*) FROM system_metrics WHERE gateway_id = 'gw-fleet'")[0]
    assert metric > 0
