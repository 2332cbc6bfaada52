"""Pinned clocks: the times of day and time zones every clock-sensitive test runs at."""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime

#: The day every simulator in the suite lives in, unless a test pins another time.
PINNED_DAY = datetime(2026, 11, 29, tzinfo=UTC)
#: The suite's default simulator start (also given to subprocesses through HACKSKY_SIM_START).
SUITE_START = "2026-11-29T12:00:00Z"
#: (time of day UTC, the gateway's time zone): the times of day a plant must look the same at,
#: each also in a zone whose offset is not a whole hour or crosses the date line.
DAY_TIMES = [("00:00", "UTC"), ("06:00", "Asia/Kathmandu"), ("12:00", "UTC"),
             ("18:00", "America/St_Johns"), ("22:30", "UTC"), ("22:30", "Pacific/Chatham")]


@dataclass(frozen=True)
class PinnedClock:
    """A start time for the simulators and the time zone the gateway runs in."""

    day_time: str
    tz: str

    @property
    def start(self) -> float:
        """Epoch seconds of ``day_time`` on the pinned day."""
        hours, minutes = (int(part) for part in self.day_time.split(":"))
        return PINNED_DAY.timestamp() + hours * 3600 + minutes * 60

    @staticmethod
    def local_hour(wall: float) -> float:
        """Hour of day in the current (pinned) local time zone, as the agent computes it."""
        t = time.localtime(wall)
        return t.tm_hour + t.tm_min / 60 + t.tm_sec / 3600
