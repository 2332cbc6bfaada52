"""A central database as the dashboard shows it: two gateways, a meter's days of readings (raw and
rolled up), the water plant's levels, alerts and an attack detection, all at a pinned time.
Used by the browser tests and ``bench dashboard``."""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Engine, insert, select

from agent.central import migrate, schema
from agent.central.maintain import maintain
from agent.central.writer import CentralWriter
from agent.records import DeviceInfo, PointInfo
from agent.settings import RetentionConfig

#: the dashboard's "now" in the tests (the API's clock is pinned to it)
NOW = datetime(2026, 3, 2, 12, 0, 0)

METER_POINTS = (
    PointInfo("active_power", unit="kW", role="power"),
    *(PointInfo(f"voltage_l{i}", unit="V", role="voltage") for i in (1, 2, 3)),
    *(PointInfo(f"current_l{i}", unit="A", role="current") for i in (1, 2, 3)),
    PointInfo("energy", unit="kWh", role="energy"),
    PointInfo("frequency", unit="Hz", role="frequency"),
    PointInfo("power_factor", role="power_factor"),
    PointInfo("breaker_closed", kind="boolean"),
)
PLANT_POINTS = (PointInfo("tank1_level", unit="m"), PointInfo("pump1_flow", unit="m3/h"),
                PointInfo("pump1_running", kind="boolean"), PointInfo("operator_note", kind="text"))


@dataclass(frozen=True)
class Seeded:
    """What was seeded, for assertions."""

    now: datetime
    meter_rows: int  # readings of meter-01's active_power
    anomalies: int  # meter-01's power rows flagged anomalous in the last 24 h
    open_alerts: int
    attack_id: int


def meter_values(t: datetime, start: datetime) -> dict[str, float]:
    """A meter's plausible values at ``t``: a daily load curve, three balanced phases."""
    hour = t.hour + t.minute / 60
    kw = 120 + 60 * math.sin((hour - 6) / 24 * 2 * math.pi) + 5 * math.sin(t.minute / 7)
    volts = [230 + 2 * math.sin(t.minute / 9 + k) for k in range(3)]
    amps = kw * 1000 / (3 * 230 * 0.95)
    energy = 50_000 + 120 * (t - start).total_seconds() / 3600
    return {"active_power": kw, "voltage_l1": volts[0], "voltage_l2": volts[1], "voltage_l3": volts[2],
            "current_l1": amps, "current_l2": amps * 1.01, "current_l3": amps * 0.99, "energy": energy,
            "frequency": 50 + 0.02 * math.sin(t.minute), "power_factor": 0.95, "breaker_closed": 1.0}


def _times(start: datetime, end: datetime, step: timedelta) -> Iterator[datetime]:
    t = start
    while t < end:
        yield t
        t += step


def seed(engine: Engine, now: datetime = NOW, days: float = 2, step_s: float = 60, chunk: int = 50_000) -> Seeded:
    """Migrate, then fill the database as :class:`Seeded` says; readings every ``step_s`` for ``days``."""
    migrate.upgrade(engine)
    writer = CentralWriter(engine, "gw-north")
    pks = writer.sync_devices([
        DeviceInfo("meter-01", "Main incomer", "power_meter", "Substation A", "modbus", "10.0.0.21:502", METER_POINTS),
        DeviceInfo("meter-02", "Feeder 1", "power_meter", "Substation A", "modbus", "10.0.0.22:502", METER_POINTS),
        DeviceInfo("plc-01", "Water plant PLC", "plc", "Pump house", "modbus", "10.0.0.30:502", PLANT_POINTS),
    ])
    CentralWriter(engine, "gw-south").sync_devices([
        DeviceInfo("meter-09", "Workshop", "power_meter", "Building C", "modbus", "10.1.0.9:502", METER_POINTS)])
    start = now - timedelta(days=days)
    step = timedelta(seconds=step_s)
    d, r, p = schema.devices, schema.readings, schema.power_readings
    with engine.begin() as conn:
        conn.execute(d.update().where(d.c.gateway_id == "gw-north").values(status="online", last_seen=now))
        conn.execute(d.update().where(d.c.device_id_str == "meter-02").values(
            status="degraded", status_reason="timeout after 3 tries", last_seen=now - timedelta(minutes=7)))
        conn.execute(d.update().where(d.c.gateway_id == "gw-south").values(
            status="unknown", status_reason="agent stopped", last_seen=now - timedelta(days=1)))
        for beat in [
            {"gateway_id": "gw-north", "agent_version": "0.1.0", "device_map_hash": "ab12", "host": "edge-north",
             "started_at": now - timedelta(days=3), "last_seen": now - timedelta(seconds=4), "beat_seq": 9000,
             "heartbeat_interval": 10.0, "last_reload_at": now - timedelta(hours=5), "last_reload_result": "ok",
             "devices_up": 2, "devices_degraded": 1, "devices_down": 0, "buffer_readings": 0, "clock_offset": 0.012,
             "created_at": now, "updated_at": now},
            {"gateway_id": "gw-south", "agent_version": "0.1.0", "host": "edge-south",
             "started_at": now - timedelta(days=9), "last_seen": now - timedelta(days=1), "beat_seq": 40,
             "stopped_at": None, "heartbeat_interval": 10.0, "devices_up": 0, "devices_degraded": 0,
             "devices_down": 1, "buffer_readings": 1520, "clock_offset": -2.5, "created_at": now, "updated_at": now}]:
            conn.execute(insert(schema.gateways).values(**beat))
        rows: list[dict[str, Any]] = []
        power: list[dict[str, Any]] = []
        meter_rows = anomalies = 0
        for t in _times(start, now, step):
            values = meter_values(t, start)
            anomalous = t.minute == 30 and t.hour % 6 == 0  # a spike four times a day
            if anomalous:
                values["active_power"] *= 1.8
            for point, v in values.items():
                rows.append({"device_id": pks["meter-01"], "point": point, "ts": t, "value": v, "quality": "good"})
            meter_rows += 1
            power.append({"device_id": pks["meter-01"], "timestamp": t, "power_consumption": values["active_power"],
                          "voltage": values["voltage_l1"], "current": values["current_l1"],
                          "frequency": values["frequency"], "is_anomaly": anomalous,
                          "anomaly_score": 6.0 if anomalous else 0.2})
            anomalies += anomalous and t >= now - timedelta(hours=24)
            if len(rows) >= chunk:
                conn.execute(insert(r), rows)
                rows = []
            if len(power) >= chunk:
                conn.execute(insert(p), power)
                power = []
        # the water plant's last hour: the level flattens at 2.5 m from 11:20 (the attack), the flow goes on
        for t in _times(now - timedelta(hours=1), now, timedelta(seconds=10)):
            frozen = t >= now - timedelta(minutes=40)
            level = 2.5 if frozen else 2.0 + 0.5 * math.sin((t - now).total_seconds() / 300)
            quality = "bad:timeout" if t.minute == 50 and t.second < 30 else "good"
            rows += [{"device_id": pks["plc-01"], "point": "tank1_level", "ts": t,
                      "value": level if quality == "good" else None, "quality": quality},
                     {"device_id": pks["plc-01"], "point": "pump1_flow", "ts": t, "value": 40.0, "quality": "good"}]
        if rows:
            conn.execute(insert(r), rows)
        if power:
            conn.execute(insert(p), power)
        conn.execute(insert(schema.alerts), [
            {"alert_type": "limit", "severity": sev, "title": title, "message": msg, "system": "gw-north",
             "gateway_id": "gw-north", "device_id": pks[dev], "point": point, "last_value": value,
             "resolved": resolved, "resolved_at": now - timedelta(hours=1) if resolved else None,
             "event_key": f"seed/{i}", "created_at": now - timedelta(minutes=10 * (i + 1)), "updated_at": now}
            for i, (sev, title, msg, dev, point, value, resolved) in enumerate([
                ("high", "Voltage L1 above limit", "voltage_l1 254.1 V > 253 V", "meter-01", "voltage_l1", 254.1,
                 False),
                ("medium", "Temperature high", "temperature 61 degC > 60", "meter-02", "temperature", 61.0, False),
                ("critical", "Attack suspected on Water plant (tank 1)", "level frozen while pump runs", "plc-01",
                 None, None, False),
                ("low", "Frequency drift", "frequency 50.4 Hz", "meter-01", "frequency", 50.4, True)])])
        conn.execute(insert(schema.attack_detections).values(
            attack_type="sensor_tampering", confidence=92.5, threat_level="critical",
            target_system="Water plant (tank 1)",
            description="sensor_tampering suspected on Water plant (tank 1): residual level_balance (score 9.3)",
            indicators={"signals": ["pump1_flow", "tank1_level"], "findings": [
                {"check": "residual", "name": "level_balance", "signals": ["tank1_level", "pump1_flow"], "score": 9.3},
                {"check": "frozen", "name": "tank1_level", "signals": ["tank1_level"], "score": 7.1}]},
            detected_at=now - timedelta(minutes=38), gateway_id="gw-north", device_id=None,
            event_key="seed/attack", created_at=now, updated_at=now))
        attack_id = conn.execute(select(schema.attack_detections.c.id)).scalar_one()
    keep_all = RetentionConfig.model_validate({"raw": None, "1m": None, "1h": None, "power_readings": None,
                                               "system_metrics": None, "incidents": None})
    maintain(engine, keep_all, now=now, backfill_marks=True)
    with engine.begin() as conn:  # as a database is once its writers moved on: no hour awaits its rollups
        conn.execute(schema.rollup_pending.delete())
    return Seeded(now, meter_rows, anomalies, open_alerts=3, attack_id=attack_id)
