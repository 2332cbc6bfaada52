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


def sync_points(conn: Connection, now: Any, device_pk: Mapping[str, int], devices: Sequence[DeviceInfo]) -> int:
    """Insert the map's new points, update changed ones, mark the ones gone from the map removed
    (their readings stay). Only devices that declare points are touched (an importer's device says
    nothing about them). ``now`` is the database's clock as an SQL expression. Returns rows changed."""
    t = schema.device_points
    wanted = {(device_pk[d.device_id], p.name): {"kind": p.kind, "unit": (p.unit or None) and p.unit[:UNIT_LENGTH],
                                                  "role": p.role}
              for d in devices if d.points and d.device_id in device_pk for p in d.points}
    pks = sorted({pk for pk, _ in wanted})
    if not pks:
        return 0
    existing = {(r.device_id, r.point): r for r in conn.execute(select(t).where(t.c.device_id.in_(pks)))}
    new = [{"device_id": pk, "point": point, **v} for (pk, point), v in wanted.items() if (pk, point) not in existing]
    changed = [{"b_pk": pk, "b_point": point, "b_kind": v["kind"], "b_unit": v["unit"], "b_role": v["role"]}
               for (pk, point), v in wanted.items() if (row := existing.get((pk, point))) is not None
               and (row.removed_at is not None or (row.kind, row.unit, row.role) != (v["kind"], v["unit"], v["role"]))]
    gone = [{"b_pk": pk, "b_point": point} for (pk, point), row in existing.items()
            if (pk, point) not in wanted and row.removed_at is None]
    if new:
        conn.execute(t.insert().values(updated_at=now), new)
    key = (t.c.device_id == bindparam("b_pk"), t.c.point == bindparam("b_point"))
    if changed:
        conn.execute(update(t).where(*key).values(kind=bindparam("b_kind"), unit=bindparam("b_unit"),
                                                  role=bindparam("b_role"), removed_at=None, updated_at=now), changed)
    if gone:
        conn.execute(update(t).where(*key).values(removed_at=now, updated_at=now), gone)
    return len(new) + len(changed) + len(gone)
