"""A meter's own load profile: its power by hour of day, weekdays apart from weekends, learned online."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, tzinfo
from typing import Any

from agent.detect.meters.learning import Streak
from agent.detect.stream import Finding

#: a reading this many spreads from its hour's mean is off-profile (LoadWatch's threshold)
PROFILE_THRESHOLD = 6.0
#: an hour's bucket judges readings once it has seen this many days (each with MIN_VISIT readings)
MIN_DAYS = 2
MIN_VISIT = 5
#: a bucket forgets with a weight of 1/n over its first days, then of 1/PROFILE_DAYS
PROFILE_DAYS = 7
#: readings only move a bucket this far (in spreads): an attack is not learned as the new normal in
#: a day, a lasting new level is within about PROFILE_DAYS days
CLIP = 3.0
#: spread never below this share of the mean (a perfectly flat load, or a meter that rounds)
MIN_SPREAD = 0.01
#: nor below this share of the meter's largest hourly mean: an hour whose load is off (0 kW) would
#: otherwise call any standby load or creep of a few watts thousands of spreads off
LEVEL_SPREAD = 0.001
#: off-profile for this many readings in a row makes a finding (a machine started early is not an attack)
PERSIST = 10


@dataclass
class Bucket:
    """One hour of day (weekday or weekend): mean and variance of power over the days it was seen."""

    days: int = 0
    mean: float = 0.0
    var: float = 0.0

    def spread(self, level: float = 0.0) -> float:
        """Standard deviation, at least MIN_SPREAD of the mean and LEVEL_SPREAD of the meter's ``level``."""
        return math.sqrt(self.var + (MIN_SPREAD * self.mean) ** 2 + (LEVEL_SPREAD * level) ** 2) + 1e-9


@dataclass
class Visit:
    """The readings of the current hour today, folded into their bucket when the hour ends."""

    day: int  # proleptic ordinal of the local date
    bucket: tuple[int, bool]  # (hour, weekend)
    n: int = 0
    total: float = 0.0
    squares: float = 0.0


class LoadProfile:
    """Scores each power reading against its hour-of-day bucket, in the gateway's time zone
    (``zone``; None: the local zone), from the readings' own timestamps."""

    kind = "load_profile"

    def __init__(self, device: str, signals: tuple[str, ...], zone: tzinfo | None = None) -> None:
        self.name, self.signals, self.zone = device, signals, zone
        self.buckets: dict[tuple[int, bool], Bucket] = {}
        self.visit: Visit | None = None
        self.level = 0.0  # the largest |mean| of a bucket: the meter's load level
        self._until_us = 0
        self.streak = Streak(PERSIST)

    def _key(self, ts_us: int) -> tuple[int, tuple[int, bool]]:
        moment = datetime.fromtimestamp(ts_us / 1e6, self.zone)
        # recomputed at the next hour, or within 15 minutes (an offset change off the hour: Chatham Islands)
        into_hour = moment.minute * 60 + moment.second + moment.microsecond / 1e6
        self._until_us = ts_us + int(min(3600 - into_hour, 900) * 1e6)
        return moment.toordinal(), (moment.hour, moment.weekday() >= 5)

    def _fold(self, visit: Visit) -> None:
        if visit.n < MIN_VISIT:
            return
        b = self.buckets.setdefault(visit.bucket, Bucket())
        mean = visit.total / visit.n
        var = max(visit.squares / visit.n - mean * mean, 0.0)
        b.days += 1
        a = max(1 / b.days, 1 / PROFILE_DAYS)
        if b.days == 1:
            b.mean, b.var = mean, var
        else:
            d = mean - b.mean
            b.mean += a * d
            b.var = (1 - a) * (b.var + a * d * d) + a * var
        self.level = max(abs(x.mean) for x in self.buckets.values())

    def learned(self) -> dict[str, Any] | None:
        """The buckets (hour, weekend, days, mean, var), the meter's level and this hour's readings so far,
        JSON-able; None before the first reading."""
        if not self.buckets and self.visit is None:
            return None
        v = self.visit
        return {"buckets": [[hour, int(weekend), b.days, b.mean, b.var] for (hour, weekend), b in self.buckets.items()],
                "level": self.level,
                "visit": None if v is None else [v.day, v.bucket[0], int(v.bucket[1]), v.n, v.total, v.squares]}

    def restore(self, learned: dict[str, Any]) -> None:
        """Take up what :meth:`learned` gave (before a restart)."""
        self.buckets = {(int(hour), bool(weekend)): Bucket(int(days), float(mean), float(var))
                        for hour, weekend, days, mean, var in learned["buckets"]}
        self.level = float(learned["level"])
        visit = learned["visit"]
        self.visit = None if visit is None else Visit(int(visit[0]), (int(visit[1]), bool(visit[2])), int(visit[3]),
                                                      float(visit[4]), float(visit[5]))
        self._until_us = 0  # the next reading finds its hour again

    def step(self, ts_us: int, power: float) -> tuple[float | None, Finding | None]:
        """(z-score, or None while the hour's bucket learns; the finding once off-profile persisted)."""
        if self.visit is None or ts_us >= self._until_us:
            day, hour = self._key(ts_us)
            if self.visit is None or (day, hour) != (self.visit.day, self.visit.bucket):
                if self.visit is not None:
                    self._fold(self.visit)
                self.visit = Visit(day, hour)
        visit = self.visit
        bucket = self.buckets.get(visit.bucket)
        z = None
        learned = power
        if bucket is not None and bucket.days >= MIN_DAYS:
            spread = bucket.spread(self.level)
            z = abs(power - bucket.mean) / spread
            learned = min(max(power, bucket.mean - CLIP * spread), bucket.mean + CLIP * spread)
        visit.n += 1
        visit.total += learned
        visit.squares += learned * learned
        if not self.streak.update(z is not None and z >= PROFILE_THRESHOLD):
            return z, None
        assert bucket is not None and z is not None
        return z, Finding(self.kind, self.name, self.signals, z / PROFILE_THRESHOLD, {
            "read_kw": round(power, 4), "expected_kw": round(bucket.mean, 4),
            "spread_kw": round(bucket.spread(self.level), 4), "hour": visit.bucket[0],
            "weekend": float(visit.bucket[1])})
