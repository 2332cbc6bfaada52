"""The wall-clock time a simulated device believes it is, for its daily patterns.

Models advance on the monotonic time their server hands to ``refresh``; the hour of day that
shapes demand and load comes from here, so a test pins it with ``start`` (or the
``HACKSKY_SIM_START`` environment variable, which subprocesses inherit) instead of depending on
when, and in which time zone, it happens to run.
"""

from __future__ import annotations

import os
import time
from datetime import UTC, datetime

#: Environment variable pinning the simulators' start time: ISO 8601 (``2026-11-29T22:30:00Z``) or epoch seconds.
START_ENV = "HACKSKY_SIM_START"


def parse_start(text: str) -> float:
    """Epoch seconds of an ISO 8601 time (naive means UTC) or of a number of epoch seconds."""
    try:
        return float(text)
    except ValueError:
        pass
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(f"{text!r} is not a time: use ISO 8601 such as 2026-11-29T22:30:00Z, or epoch seconds")\
            from None
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()


def default_start() -> float:
    """``HACKSKY_SIM_START`` when set, else now."""
    pinned = os.environ.get(START_ENV)
    if pinned:
        try:
            return parse_start(pinned)
        except ValueError as exc:
            raise ValueError(f"{START_ENV}: {exc}") from None
    return time.time()


class SimClock:
    """Wall time = ``start`` (epoch seconds, default: :func:`default_start`) + time since the first refresh."""

    def __init__(self, start: float | None = None) -> None:
        self.start = default_start() if start is None else float(start)
        self._origin: float | None = None

    def wall(self, now: float) -> float:
        """Epoch seconds (UTC) at monotonic time ``now``."""
        if self._origin is None:
            self._origin = now
        return self.start + (now - self._origin)

    @staticmethod
    def hour_of_day(wall: float) -> float:
        """Hour of the UTC day, 0 <= h < 24."""
        return (wall % 86400) / 3600
