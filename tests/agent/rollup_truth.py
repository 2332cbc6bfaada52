"""What the rollups must say: plant-like readings and their aggregates computed in Python from the raw rows."""

from __future__ import annotations

import math
from collections import defaultdict
from typing import Any

from sqlalchemy import Engine

from agent.central.writer import CentralWriter
from agent.records import DeviceInfo
from agent.settings import RetentionConfig
from drivers.base import Reading

T0 = 1_780_000_000_000_000 - 1_780_000_000_000_000 % 3_600_000_000  # µs, an hour's start (pinned)
#: retention that deletes nothing (the tests pin their data's times, not the database's clock)
KEEP_ALL = RetentionConfig.model_validate({"raw": None, "1m": None, "1h": None, "power_readings": None,
                                           "system_metrics": None, "incidents": None})


def plant_readings(start_us: int, seconds: int, every_s: int = 7) -> list[Reading]:
    """Two meters, a number and a text point, some bad and uncertain readings, across the given span."""
    out = []
    for device in ("m1", "m2"):
        for k, t in enumerate(range(0, seconds, every_s)):
            ts = start_us + t * 1_000_000 + (3 if device == "m2" else 0)
            value = round(math.sin(t / 100) * 10 + (5 if device == "m2" else 0), 6)
            quality = "bad:timeout" if k % 11 == 5 else "uncertain:clock" if k % 13 == 7 else "good"
            out.append(Reading(device, "power", ts, None if quality.startswith("bad") else value, None, quality))
            out.append(Reading(device, "mode", ts, None, "auto" if k % 2 else "manual"))
    return out


def expected(readings: list[Reading], bucket_us: int) -> dict[tuple[str, str, int], tuple[Any, ...]]:
    """(device, point, bucket start µs) -> (count, good_count, min, max, sum, first, last), from the raw readings."""
    groups: dict[tuple[str, str, int], list[Reading]] = defaultdict(list)
    for r in readings:
        groups[(r.device, r.point, r.ts_us - r.ts_us % bucket_us)].append(r)
    out = {}
    for key, rows in groups.items():
        good = sorted((r for r in rows if r.quality == "good" and r.value is not None), key=lambda r: r.ts_us)
        values = [r.value for r in good]
        out[key] = (len(rows), len(good), min(values, default=None), max(values, default=None),
                    round(sum(values), 6) if values else None, good[0].value if good else None,
                    good[-1].value if good else None)
    return out


def writer_for(engine: Engine, gateway: str = "gw-roll") -> CentralWriter:
    """A central writer of ``gateway`` with devices m1 and m2 registered."""
    writer = CentralWriter(engine, gateway)
    writer.sync_devices([DeviceInfo("m1"), DeviceInfo("m2")])
    return writer
