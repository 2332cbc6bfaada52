"""The central writer and schema, on SQLite and on real MariaDB."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import func, select, text
from sqlalchemy.engine import Engine

from agent.buffer.disk import Pack
from agent.central import migrate, schema
from agent.central.writer import CentralWriter, to_datetime
from agent.records import DeviceInfo, Event, PointInfo
from drivers.base import Reading

T0 = 1_764_000_000_000_000


def test_migrations_build_exactly_the_declared_schema(migrated_engine: Engine) -> None:
    with migrated_engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), schema.metadata)
    assert diff == []
    assert migrate.upgrade(migrated_engine) == migrate.head_revision()  # idempotent
    assert migrate.current_revision(migrated_engine) == migrate.head_revision()


def _pack() -> Pack:
    return Pack(
        readings=[Reading("m1", "v", T0 + i, 230.0 + i) for i in range(1000)]
        + [Reading("m1", "label", T0, None, "HackSky"), Reading("gone", "x", T0, None, None, "bad:timeout")],
        events=[
            Event("power", {"device": "m1", "ts_us": T0, "fields": {"voltage": 230.5, "power_consumption": 12.0}}),
            Event("alert", {"op": "open", "key": "limit/m1/v/1", "ts_us": T0, "device": "m1", "point": "v",
                            "alert_type": "limit_violation", "severity": "high", "title": "m1 v above max",
                            "message": "too high", "value": 260.0, "system": "edge-gateway"}),
            Event("alert", {"op": "update", "key": "limit/m1/v/1", "ts_us": T0 + 5, "device": "m1", "point": "v",
                            "alert_type": "limit_violation", "severity": "critical", "title": "m1 v above max",
                            "message": "higher", "value": 270.0, "system": "edge-gateway"}),
            Event("metric", {"name": "buffer_depth", "value": 3, "unit": "rows", "category": "buffer",
                             "ts_us": T0}),
            Event("device_status", {"device": "m1", "status": "degraded", "reason": "timeout x1",
                                    "ts_us": T0, "last_seen_us": T0}),
        ])


def test_pack_lands_once_even_when_replayed(migrated_engine: Engine) -> None:
    writer = CentralWriter(migrated_engine, "gw-test")
    ids = writer.sync_devices([DeviceInfo("m1", "Meter", "power_meter", "Sub A")])
    pack = _pack()
    writer.write(pack)
    writer.write(pack)  # the crash-between-commit-and-ack replay
    with migrated_engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(schema.readings)).scalar() == 1002
        assert conn.execute(select(func.sum(schema.readings.c.value)).where(
            schema.readings.c.device_id == ids["m1"], schema.readings.c.point == "v")).scalar() == sum(
            230.0 + i for i in range(1000))
        label = conn.execute(select(schema.readings.c.value_text).where(schema.readings.c.point == "label")).scalar()
        assert label == "HackSky"
        assert conn.execute(select(func.count()).select_from(schema.power_readings)).scalar() == 1
        alert = conn.execute(select(schema.alerts)).one()
        assert (alert.severity, alert.message, alert.last_value, alert.resolved) == ("critical", "higher", 270.0, False)
        device = conn.execute(select(schema.devices).where(schema.devices.c.device_id_str == "m1")).one()
        assert (device.status, device.location, device.gateway_id) == ("degraded", "Sub A", "gw-test")
        gone = conn.execute(select(schema.devices.c.protocol).where(schema.devices.c.device_id_str == "gone")).scalar()
        assert gone == "unknown", "rows of a device no longer in the map still land"
        assert conn.execute(select(func.count()).select_from(schema.system_metrics)).scalar() == 1


def test_alert_closes_and_acknowledge_workflow_columns_exist(migrated_engine: Engine) -> None:
    writer = CentralWriter(migrated_engine, "gw-test")
    writer.sync_devices([DeviceInfo("m1")])
    writer.write(_pack())
    writer.write(Pack(events=[Event("alert", {"op": "close", "key": "limit/m1/v/1", "ts_us": T0 + 9})]))
    with migrated_engine.begin() as conn:
        conn.execute(text("UPDATE alerts SET acknowledged = 1, acknowledged_by = 'operator' WHERE id = 1"))
        row = conn.execute(select(schema.alerts)).one()
    assert row.resolved and row.resolved_at is not None and row.acknowledged_by == "operator"
    assert row.event_key == "gw-test/limit/m1/v/1"


def test_device_sync_updates_changed_devices(migrated_engine: Engine) -> None:
    writer = CentralWriter(migrated_engine, "gw-a")
    first = writer.sync_devices([DeviceInfo("m1", "Old"), DeviceInfo("m2")])
    second = CentralWriter(migrated_engine, "gw-a").sync_devices([DeviceInfo("m1", "New")])
    other = CentralWriter(migrated_engine, "gw-b").sync_devices([DeviceInfo("m1")])
    assert second["m1"] == first["m1"] and other["m1"] not in first.values()
    with migrated_engine.connect() as conn:
        assert conn.execute(select(schema.devices.c.name).where(schema.devices.c.id == first["m1"])).scalar() == "New"


def test_text_numbers_and_timestamps_round_trip_exactly(migrated_engine: Engine) -> None:
    """The MySQL path renders its own INSERT text: quoting, escapes and precision must be exact."""
    texts = ["it's", 'say "hi"', "back\\slash", "100% sure %s %(x)s", "tab\there\nnewline", "ünïcødé ✓", "", "NULL"]
    numbers = [0.1, -1e-300, 1e308, 123456789.123456789, 2.0**53, -273.15]
    readings = [Reading("m1", "text", T0 + i * 1_000_001, None, t) for i, t in enumerate(texts)]
    readings += [Reading("m1", f"n{i}", T0 + 7, v) for i, v in enumerate(numbers)]  # T0 + 7: 7 microseconds
    readings += [Reading("m1", "bad", T0, None, None, "bad:exception:2")]  # T0: a whole second
    writer = CentralWriter(migrated_engine, "gw-text")
    writer.sync_devices([DeviceInfo("m1")])
    writer.write(Pack(readings=readings))
    writer.write(Pack(readings=readings))  # replayed: no change, no error
    r = schema.readings
    with migrated_engine.connect() as conn:
        rows = conn.execute(select(r.c.point, r.c.ts, r.c.value, r.c.value_text, r.c.quality)
                            .order_by(r.c.point, r.c.ts)).all()
    got = sorted((p, ts, v, t, q) for p, ts, v, t, q in rows)
    want = sorted((x.point, to_datetime(x.ts_us), x.value, x.text, x.quality) for x in readings)
    assert got == want


def test_device_points_follow_the_map_and_keep_removed_ones(migrated_engine: Engine) -> None:
    """Each start and reload puts the map's points in device_points: new ones added, a changed unit or
    role updated, a point gone from the map kept with removed_at (its readings stay), and back again."""
    t = schema.device_points
    writer = CentralWriter(migrated_engine, "gw-1")
    power, volts = PointInfo("p", unit="kW", role="power"), PointInfo("v", unit="V", role="voltage")
    state = PointInfo("on", kind="boolean")

    def rows() -> dict[str, tuple[object, ...]]:
        with migrated_engine.connect() as conn:
            return {r.point: (r.kind, r.unit, r.role, r.removed_at is not None)
                    for r in conn.execute(select(t).order_by(t.c.point))}

    meter = DeviceInfo("m1", type="power_meter", points=(power, volts, state))
    writer.sync_devices([meter])
    assert rows() == {"on": ("boolean", None, None, False), "p": ("number", "kW", "power", False),
                      "v": ("number", "V", "voltage", False)}
    writer.sync_devices([DeviceInfo("m1", type="power_meter", points=(PointInfo("p", unit="W", role="power"), state))])
    assert rows() == {"on": ("boolean", None, None, False), "p": ("number", "W", "power", False),
                      "v": ("number", "V", "voltage", True)}
    writer.sync_devices([meter])  # back in the map
    assert rows()["v"] == ("number", "V", "voltage", False)
    # a device announced without points (the CSV importer's) leaves its points alone
    writer.sync_devices([DeviceInfo("m1", type="power_meter")])
    assert len([r for r in rows().values() if not r[3]]) == 3
    # a unit longer than the column is cut, not refused
    writer.sync_devices([DeviceInfo("m1", points=(PointInfo("p", unit="x" * 80),))])
    assert rows()["p"][1] == "x" * 32
    # renamed only in case: the same row renamed (MySQL's collation ignores case, a new row would clash)
    writer.sync_devices([DeviceInfo("m1", points=(PointInfo("P", unit="kW", role="power"),))])
    assert {k: v[3] for k, v in rows().items()} == {"P": False, "on": True, "v": True}
    # an import's columns are added, the map's points left as they are
    writer.add_points("m1", [PointInfo("imported"), PointInfo("p")])
    assert {k: v[3] for k, v in rows().items()} == {"P": False, "imported": False, "on": True, "v": True}
