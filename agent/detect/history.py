"""Rows of normal operation from readings already in the central database (for ``train --from-db``)."""

from __future__ import annotations

import logging
from datetime import UTC, datetime

import numpy as np
from sqlalchemy import Engine, and_, or_, select

from agent.central import schema
from agent.detect.dataset import Dataset

log = logging.getLogger(__name__)


def load_history(engine: Engine, gateway: str, wiring: dict[str, tuple[str, str]], interval: float,
                 since: datetime, until: datetime) -> Dataset:
    """Each signal's last good value per ``interval`` bucket, held forward; rows start once all are seen.

    ``since``/``until`` are naive UTC, like the stored timestamps.

    One query streams the readings of all wired points in time order (no per-signal round trip).
    """
    r, d = schema.readings, schema.devices
    column_of = {ref: i for i, ref in enumerate(wiring.values())}
    wanted = or_(*(and_(d.c.device_id_str == dev, r.c.point == point) for dev, point in wiring.values()))
    query = (select(d.c.device_id_str, r.c.point, r.c.ts, r.c.value)
             .join(d, d.c.id == r.c.device_id)
             .where(d.c.gateway_id == gateway, r.c.ts >= since, r.c.ts < until, r.c.quality == "good",
                    r.c.value.is_not(None), wanted)
             .order_by(r.c.ts))
    buckets: dict[int, np.ndarray] = {}
    with engine.connect() as conn:
        for device, point, ts, value in conn.execution_options(stream_results=True).execute(query):
            key = int(ts.replace(tzinfo=UTC).timestamp() // interval)  # stored as naive UTC
            row = buckets.get(key)
            if row is None:
                row = buckets[key] = np.full(len(wiring), np.nan)
            row[column_of[(device, point)]] = value
    if not buckets:
        raise ValueError(f"no readings of the wired points for gateway {gateway!r} between {since} and {until}")
    first, last = min(buckets), max(buckets)
    rows, times = [], []
    current = np.full(len(wiring), np.nan)
    for key in range(first, last + 1):
        fresh = buckets.get(key)
        if fresh is not None:
            current = np.where(np.isnan(fresh), current, fresh)
        if not np.isnan(current).any():
            rows.append(current.copy())
            times.append(datetime.fromtimestamp(key * interval))  # local time: the runner's hour of day
    log.info("%d rows of %d signals from %d buckets of readings", len(rows), len(wiring), last - first + 1)
    if not rows:
        raise ValueError("no interval in which every wired signal had been read")
    return Dataset(f"{gateway} readings", times, list(wiring), np.array(rows), None)
