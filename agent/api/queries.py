"""SQL behind the API: one query per list (joins, never a query per row)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import and_, case, func, select
from sqlalchemy.engine import Connection, Row

from agent.api import hybrid
from agent.central import schema

d, p, a, x, m = schema.devices, schema.power_readings, schema.alerts, schema.attack_detections, schema.system_metrics
gw = schema.gateways

#: a gateway is ``online`` while its last heartbeat is at most this many heartbeat intervals old,
#: ``stale`` up to STALE_AFTER of them (a late beat, a slow link, a writer catching up), then ``offline``
ONLINE_WITHIN, STALE_WITHIN = 2.5, 10.0


@dataclass
class Window:
    """The filters most endpoints share."""

    gateway: str | None = None
    device: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    limit: int = 100
    offset: int = 0


def as_dict(row: Row[Any] | Any) -> dict[str, Any]:
    """A row as JSON-ready values (datetimes in ISO 8601, UTC)."""
    return json_ready(row._mapping)


def json_ready(values: Mapping[Any, Any]) -> dict[str, Any]:
    """``values`` with datetimes in ISO 8601, UTC."""
    return {k: (v.isoformat() + "Z" if isinstance(v, datetime) else v) for k, v in values.items()}


def count_where(condition: Any) -> Any:
    """Rows matching ``condition`` as an integer on every backend (SUM over CASE is a DECIMAL on MariaDB)."""
    return func.count(case((condition, 1)))


def _filtered(q: Any, w: Window, ts: Any, gateway_col: Any) -> Any:
    if w.gateway:
        q = q.where(gateway_col == w.gateway)
    if w.device:
        q = q.where(d.c.device_id_str == w.device)
    if w.since:
        q = q.where(ts >= w.since)
    if w.until:
        q = q.where(ts < w.until)
    return q


def page(conn: Connection, q: Any, w: Window, order: Any) -> dict[str, Any]:
    """Items of one page plus the total count of the filtered set."""
    total = conn.execute(select(func.count()).select_from(q.order_by(None).subquery())).scalar_one()
    rows = conn.execute(q.order_by(order).limit(w.limit).offset(w.offset)).fetchall()
    return {"items": [as_dict(r) for r in rows], "total": total, "limit": w.limit, "offset": w.offset}


def power_data(conn: Connection, w: Window, anomalies_only: bool) -> dict[str, Any]:
    """A page of ``power_readings``, newest first: the page's ids from the table alone (backwards along
    its time index), then their devices; the total from ``power_1h`` (:mod:`agent.api.hybrid`)."""
    ids = device_ids(w)
    where = [*hybrid.within(p.c.timestamp, w.since, w.until), *([p.c.device_id.in_(ids)] if ids is not None else []),
             *([p.c.is_anomaly.is_(True)] if anomalies_only else [])]
    newest = p.c.timestamp.desc(), p.c.id.desc()
    chosen = select(p.c.id).where(*where).order_by(*newest).limit(w.limit).offset(w.offset).subquery("page")
    rows = conn.execute(select(p.c.id, d.c.gateway_id, d.c.device_id_str.label("device"),
                               d.c.name.label("device_name"), p.c.timestamp, p.c.power_consumption, p.c.voltage,
                               p.c.current, p.c.frequency, p.c.temperature, p.c.humidity, p.c.is_anomaly,
                               p.c.anomaly_score)
                        .select_from(chosen.join(p, p.c.id == chosen.c.id).join(d, d.c.id == p.c.device_id))
                        .order_by(*newest)).fetchall()
    total = hybrid.power_count(conn, w.since, w.until, ids, anomalies_only)
    return {"items": [as_dict(r) for r in rows], "total": total, "limit": w.limit, "offset": w.offset}


def devices(conn: Connection, gateway: str | None, status: str | None, type_: str | None) -> dict[str, Any]:
    q = select(d.c.id, d.c.gateway_id, d.c.device_id_str.label("device"), d.c.name, d.c.type, d.c.location,
               d.c.protocol, d.c.address, d.c.status, d.c.status_reason, d.c.last_seen, d.c.updated_at)
    for col, value in ((d.c.gateway_id, gateway), (d.c.status, status), (d.c.type, type_)):
        if value:
            q = q.where(col == value)
    rows = conn.execute(q.order_by(d.c.gateway_id, d.c.device_id_str)).fetchall()
    return {"items": [as_dict(r) for r in rows], "total": len(rows)}


def points(conn: Connection, gateway: str | None, device: str | None, role: str | None,
           removed: bool) -> dict[str, Any]:
    """Devices' points as their maps declare them (``device_points``), with their device's type and name."""
    t = schema.device_points
    q = select(d.c.gateway_id, d.c.device_id_str.label("device"), d.c.name.label("device_name"),
               d.c.type.label("device_type"), t.c.point, t.c.kind, t.c.unit, t.c.role, t.c.removed_at,
               t.c.updated_at).join(d, d.c.id == t.c.device_id)
    for col, value in ((d.c.gateway_id, gateway), (d.c.device_id_str, device), (t.c.role, role)):
        if value:
            q = q.where(col == value)
    if not removed:
        q = q.where(t.c.removed_at.is_(None))
    rows = conn.execute(q.order_by(d.c.gateway_id, d.c.device_id_str, t.c.point)).fetchall()
    return {"items": [as_dict(r) for r in rows], "total": len(rows)}


ALERT_COLUMNS = (a.c.id, a.c.alert_type, a.c.severity, a.c.title, a.c.message, a.c.system, a.c.gateway_id,
                 d.c.device_id_str.label("device"), a.c.point, a.c.last_value, a.c.acknowledged, a.c.acknowledged_by,
                 a.c.acknowledged_at, a.c.resolved, a.c.resolved_at, a.c.created_at, a.c.updated_at)


def alerts(conn: Connection, w: Window, severity: str | None, resolved: bool | None,
           acknowledged: bool | None) -> dict[str, Any]:
    q = _filtered(select(*ALERT_COLUMNS).outerjoin(d, d.c.id == a.c.device_id), w, a.c.created_at, a.c.gateway_id)
    if severity:
        q = q.where(a.c.severity == severity)
    if resolved is not None:
        q = q.where(a.c.resolved.is_(resolved))
    if acknowledged is not None:
        q = q.where(a.c.acknowledged.is_(acknowledged))
    return page(conn, q, w, a.c.created_at.desc())


def alert(conn: Connection, alert_id: int) -> dict[str, Any] | None:
    row = conn.execute(select(*ALERT_COLUMNS).outerjoin(d, d.c.id == a.c.device_id).where(a.c.id == alert_id)).first()
    return as_dict(row) if row else None


def attack_analysis(conn: Connection, w: Window, attack_type: str | None) -> dict[str, Any]:
    base = select(x.c.id, x.c.attack_type, x.c.confidence, x.c.threat_level, x.c.source_ip, x.c.target_system,
                  x.c.description, x.c.indicators, x.c.mitigated, x.c.mitigation_action, x.c.detected_at,
                  x.c.ended_at, x.c.gateway_id, d.c.device_id_str.label("device"), x.c.updated_at)
    base = _filtered(base.outerjoin(d, d.c.id == x.c.device_id), w, x.c.detected_at, x.c.gateway_id)
    if attack_type:
        base = base.where(x.c.attack_type == attack_type)
    sub = base.subquery()  # summaries over the same filtered set as the page
    by_type = conn.execute(select(
        sub.c.attack_type, func.count().label("count"), func.max(sub.c.confidence).label("max_confidence"),
        count_where(sub.c.ended_at.is_(None)).label("open"),
    ).group_by(sub.c.attack_type).order_by(func.count().desc())).fetchall()
    by_level = conn.execute(select(sub.c.threat_level, func.count()).group_by(sub.c.threat_level)).fetchall()
    result = page(conn, base, w, x.c.detected_at.desc())
    result["summary"] = {"by_attack_type": [as_dict(r) for r in by_type],
                         "by_threat_level": {level: n for level, n in by_level}}
    return result


def device_ids(w: Window) -> Any:
    """The ids of the devices the window's gateway and device filters keep (None: every device)."""
    if not w.gateway and not w.device:
        return None
    q = select(d.c.id)
    if w.gateway:
        q = q.where(d.c.gateway_id == w.gateway)
    if w.device:
        q = q.where(d.c.device_id_str == w.device)
    return q


def statistics(conn: Connection, w: Window) -> dict[str, Any]:
    """Counts over the window: readings and power from the hourly rollups (plus the raw rows of
    partial and not yet rolled-up hours: :mod:`agent.api.hybrid`), alerts and attacks directly."""
    ids = device_ids(w)
    readings = hybrid.readings_summary(conn, w.since, w.until, ids)
    meters = hybrid.power_summary(conn, w.since, w.until, ids)
    names = {row.id: (row.gateway_id, row.device_id_str) for row in conn.execute(
        select(d.c.id, d.c.gateway_id, d.c.device_id_str).where(d.c.id.in_(list(meters))))} if meters else {}
    power = [{"gateway_id": names[pk][0], "device": names[pk][1], "samples": m["samples"], "avg_kw": m["avg_kw"],
              "min_kw": m["min_kw"], "max_kw": m["max_kw"], "anomalies": m["anomalies"]}
             for pk, m in sorted(meters.items(), key=lambda item: names[item[0]])]
    alert_q = _filtered(select(a.c.severity, func.count().label("total"),
                               count_where(a.c.resolved.is_(False)).label("open"))
                        .outerjoin(d, d.c.id == a.c.device_id), w, a.c.created_at, a.c.gateway_id)
    attack_q = _filtered(select(x.c.attack_type, func.count().label("total"))
                         .outerjoin(d, d.c.id == x.c.device_id), w, x.c.detected_at, x.c.gateway_id)
    return {
        "readings": json_ready(readings),
        "power": power,
        "alerts": {row.severity: {"total": row.total, "open": row.open}
                   for row in conn.execute(alert_q.group_by(a.c.severity))},
        "attack_detections": {row.attack_type: row.total for row in conn.execute(attack_q.group_by(x.c.attack_type))},
    }


def heartbeat_age(last_seen: datetime, clock_offset: float | None, now: datetime) -> float:
    """Seconds since the last heartbeat, its time stamp corrected by the gateway's measured clock
    offset (a gateway whose clock is off is judged by when it really spoke)."""
    return (now - last_seen).total_seconds() + (clock_offset or 0.0)


def gateway_status(last_seen: datetime | None, interval: float | None, now: datetime,
                   stopped: bool = False, clock_offset: float | None = None) -> str:
    """online / stale / offline by the age of the last heartbeat against the gateway's own interval;
    ``offline`` at once after a clean stop."""
    if last_seen is None or not interval or stopped:
        return "offline"
    age = heartbeat_age(last_seen, clock_offset, now)
    return "online" if age <= ONLINE_WITHIN * interval else "stale" if age <= STALE_WITHIN * interval else "offline"


def fleet(conn: Connection, now: datetime, status: str | None = None) -> dict[str, Any]:
    """Every gateway's row with its status as of ``now`` (naive UTC) and the heartbeat's age."""
    items = []
    for row in conn.execute(select(gw).order_by(gw.c.gateway_id)):
        item = as_dict(row)
        item["status"] = gateway_status(row.last_seen, row.heartbeat_interval, now, row.stopped_at is not None,
                                        row.clock_offset)
        item["last_seen_age_s"] = (round(heartbeat_age(row.last_seen, row.clock_offset, now), 3)
                                   if row.last_seen else None)
        if status is None or item["status"] == status:
            items.append(item)
    return {"items": items, "total": len(items), "as_of": now.isoformat() + "Z"}


def system_status(conn: Connection, now: datetime) -> dict[str, Any]:
    gateways: dict[str, dict[str, Any]] = {}

    def entry(gateway: str) -> dict[str, Any]:
        return gateways.setdefault(gateway, {"gateway_id": gateway, "devices": {}, "last_seen": None, "metrics": {}})

    per_gateway = conn.execute(select(d.c.gateway_id, d.c.status, func.count(), func.max(d.c.last_seen))
                               .group_by(d.c.gateway_id, d.c.status)).fetchall()
    for gateway, status, count, last_seen in per_gateway:
        e = entry(gateway)
        e["devices"][status] = count
        if last_seen and (e["last_seen"] is None or last_seen.isoformat() + "Z" > e["last_seen"]):
            e["last_seen"] = last_seen.isoformat() + "Z"
    latest = select(m.c.gateway_id, m.c.metric_name, func.max(m.c.timestamp).label("ts")).group_by(
        m.c.gateway_id, m.c.metric_name).subquery()
    metrics = conn.execute(select(m.c.gateway_id, m.c.metric_name, m.c.value, m.c.unit, m.c.timestamp).join(
        latest, and_(m.c.gateway_id == latest.c.gateway_id, m.c.metric_name == latest.c.metric_name,
                     m.c.timestamp == latest.c.ts))).fetchall()
    for gateway, name, value, unit, ts in metrics:
        entry(gateway)["metrics"][name] = {"value": value, "unit": unit, "at": ts.isoformat() + "Z"}
    for row in fleet(conn, now)["items"]:
        entry(row["gateway_id"])["fleet"] = {k: v for k, v in row.items() if k != "gateway_id"}
    open_alerts: dict[str, int] = dict(conn.execute(select(a.c.severity, func.count()).where(a.c.resolved.is_(False))
                                    .group_by(a.c.severity)).fetchall())
    open_attacks = conn.execute(select(func.count()).select_from(x).where(x.c.ended_at.is_(None))).scalar_one()
    return {"gateways": sorted(gateways.values(), key=lambda e: e["gateway_id"]),
            "open_alerts": open_alerts, "open_attack_detections": open_attacks}


def table_counts(conn: Connection) -> dict[str, int]:
    """Rows per table; readings and power_readings from their hourly rollups (plus the raw rows of
    their oldest, partial hour and of marked hours), not by scanning the two big tables."""
    counts = {t.name: conn.execute(select(func.count()).select_from(t)).scalar_one() for t in (d, a, x, m)}
    since = hybrid.stored_since(conn, hybrid.READINGS, None)
    counts["readings"] = hybrid.readings_summary(conn, since, None, ends=False)["readings"]
    counts["power_readings"] = hybrid.power_count(conn, None, None)
    return {t.name: counts[t.name] for t in (d, schema.readings, p, a, x, m)}
