"""The small interface every protocol driver implements, and the data it returns."""

from __future__ import annotations

import logging
import os
import random
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, NamedTuple, Protocol

GOOD = "good"
HealthState = Literal["unknown", "up", "degraded", "down"]


def now_us() -> int:
    """Current UTC time in integer microseconds since the epoch."""
    return time.time_ns() // 1000


class Reading(NamedTuple):
    """One value of one point at one acquisition time.

    ``quality`` is ``"good"`` or ``"bad:<reason>"`` (``timeout``, ``connection``,
    ``exception:2``, ``decode``, ``not_finite`` ...); a bad reading has no value. A named
    tuple: the agent makes one per point per poll, and this is the cheapest immutable record.
    """

    device: str
    point: str
    ts_us: int
    value: float | None
    text: str | None = None
    quality: str = GOOD

    @property
    def good(self) -> bool:
        """True when the value was read and decoded."""
        return self.quality == GOOD


class Backoff:
    """Reconnect backoff of one connection: 0.5 s doubling to 30 s, with +/-20 % jitter."""

    START, MAX = 0.5, 30.0

    def __init__(self) -> None:
        self.failures = 0
        self.retry_at = 0.0

    def wait(self) -> float:
        """Seconds until the next attempt is allowed (<= 0: now)."""
        return self.retry_at - time.monotonic()

    def failed(self) -> None:
        """One more failed attempt: push the next one back."""
        self.failures += 1
        delay = min(self.MAX, self.START * 2 ** (self.failures - 1))
        self.retry_at = time.monotonic() + delay * random.uniform(0.8, 1.2)

    def succeeded(self) -> None:
        """Connected: the next failure starts from the shortest delay again."""
        self.failures, self.retry_at = 0, 0.0


def write_new(path: Path, data: bytes, mode: int = 0o644) -> None:
    """Create ``path`` holding ``data`` with ``mode`` from the start; never overwrites, never follows a link.

    Raises FileExistsError when anything (a file, a symlink, even a dangling one) is at ``path``.
    """
    fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_WRONLY | os.O_CLOEXEC, mode)
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
    except BaseException:
        path.unlink(missing_ok=True)  # no half-written file left behind
        raise


class ReadError(Exception):
    """A read that failed; ``reason`` becomes the quality ``bad:<reason>``."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


@dataclass
class DeviceHealth:
    """What the agent knows about one device's reachability; logs state changes once (``log=None``:
    the driver logs them itself, with what it knows of the cause)."""

    device: str
    state: HealthState = "unknown"
    reason: str = ""
    since_us: int = field(default_factory=now_us)
    last_good_us: int | None = None
    errors: Counter[str] = field(default_factory=Counter)
    log: logging.Logger | None = field(default=logging.getLogger("drivers"), repr=False)

    def record(self, total: int, bad: Counter[str]) -> None:
        """Update after one poll of ``total`` points, ``bad`` counting failures by reason."""
        self.errors.update(bad)
        failed = sum(bad.values())
        if failed == 0:
            new_state: HealthState = "up"
            reason = ""
        else:
            reason = ", ".join(f"{r} x{n}" for r, n in bad.most_common())
            new_state = "down" if failed >= total else "degraded"
        if failed < total:
            self.last_good_us = now_us()
        if new_state == self.state and (new_state == "up" or reason == self.reason):
            return
        previous = self.state
        self.state, self.reason, self.since_us = new_state, reason, now_us()
        if self.log is None:
            return
        if new_state == "up":
            if previous != "unknown":
                self.log.info("device %s recovered (was %s)", self.device, previous)
        elif previous in ("up", "unknown") or (previous != new_state):
            self.log.error("device %s is %s: %s", self.device, new_state, reason)
        else:
            self.log.debug("device %s still %s: %s", self.device, new_state, reason)


class Driver(Protocol):
    """Reads all configured points of one device."""

    device_id: str
    health: DeviceHealth

    async def read(self) -> list[Reading]:
        """Read every point once; failures come back as bad-quality readings, not exceptions."""

    async def close(self) -> None:
        """Release connections."""
