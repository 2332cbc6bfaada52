"""``device_points`` kept in step with a gateway's device map: what each point is (kind, unit, role)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import bindparam, select, update
from sqlalchemy.engine import Connection

from agent.central import schema
from agent.records import DeviceInfo

#: the longest unit the table keeps (a longer one is cut, not refused: it only labels a chart)
UNIT_LENGTH = 32


def sync_points(conn: Connection, now: Any, device_pk: Mapping[str, int], devices: Sequence[DeviceInfo],
                complete: bool = True) -> int:
    """Insert the devices' new points; with ``complete`` (a whole map, which says what each point
    is) also update changed ones and mark the points gone from it removed (their readings stay).
    Only devices that declare points are touched. Names match as MySQL's default collation does,
    ignoring case: a point renamed only in case is that row, renamed. ``now`` is the database's
    clock as an SQL expression. Returns the rows changed."""
    t = schema.device_points
    wanted: dict[tuple[int, str], dict[str, Any]] = {}
    for d in devices:
        if d.points and d.device_id in device_pk:
            for p in d.points:
                wanted.setdefault((device_pk[d.device_id], p.name.casefold()), {
                    "point": p.name, "kind": p.kind, "unit": p.unit[:UNIT_LENGTH] if p.unit else None, "role": p.role})
    pks = sorted({pk for pk, _ in wanted})
    if not pks:
        return 0
    existing = {(r.device_id, r.point.casefold()): r for r in conn.execute(select(t).where(t.c.device_id.in_(pks)))}
    new = [{"device_id": key[0], **v} for key, v in wanted.items() if key not in existing]
    changed = [{"b_pk": key[0], "b_was": row.point, "b_point": v["point"], "b_kind": v["kind"], "b_unit": v["unit"],
                "b_role": v["role"]} for key, v in wanted.items() if complete and (row := existing.get(key)) is not None
               and (row.removed_at is not None or (row.point, row.kind, row.unit, row.role)
                    != (v["point"], v["kind"], v["unit"], v["role"]))]
    gone = [{"b_pk": pk, "b_was": row.point} for (pk, name), row in existing.items()
            if complete and (pk, name) not in wanted and row.removed_at is None]
    if new:
        conn.execute(t.insert().values(updated_at=now), new)
    key = (t.c.device_id == bindparam("b_pk"), t.c.point == bindparam("b_was"))
    if changed:
        conn.execute(update(t).where(*key).values(
            point=bindparam("b_point"), kind=bindparam("b_kind"), unit=bindparam("b_unit"), role=bindparam("b_role"),
            removed_at=None, updated_at=now), changed)
    if gone:
        conn.execute(update(t).where(*key).values(removed_at=now, updated_at=now), gone)
    return len(new) + len(changed) + len(gone)
