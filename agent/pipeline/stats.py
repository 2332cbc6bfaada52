"""In-memory operating figures of the agent, per device and overall."""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field

from agent.pipeline.status import PollFigures

#: Recent polls kept per device for the latency and lag percentiles (~2 minutes at 1 s).
RECENT_POLLS = 128


def percentiles(samples: deque[float] | list[float], qs: tuple[float, ...] = (50, 99)) -> list[float]:
    """Percentiles of recent samples, interpolated as numpy's default (0 when there are none).

    A sort of a hundred floats in Python is cheaper than a numpy call, and the status loop
    runs this for every device.
    """
    if not samples:
        return [0.0 for _ in qs]
    ordered = sorted(samples)
    last = len(ordered) - 1
    out = []
    for q in qs:
        pos = q / 100 * last
        low = int(pos)
        high = min(low + 1, last)
        out.append(ordered[low] + (ordered[high] - ordered[low]) * (pos - low))
    return out


@dataclass
class DeviceStats:
    """Polling figures of one device; percentiles are refreshed by :meth:`update_percentiles`."""

    polls: int = 0
    missed: int = 0
    readings: int = 0
    bad_readings: int = 0
    latency_s: deque[float] = field(default_factory=lambda: deque(maxlen=RECENT_POLLS))
    lag_s: deque[float] = field(default_factory=lambda: deque(maxlen=RECENT_POLLS))
    #: latency p50, p99, lag p50, p99 in ms, as of the last update
    figures: tuple[float, float, float, float] = field(init=False)

    def __post_init__(self) -> None:
        self.update_percentiles()  # all zero until polls come

    def update_percentiles(self) -> None:
        """Recompute the latency and lag percentiles of the recent polls."""
        lat50, lat99 = percentiles(self.latency_s)
        lag50, lag99 = percentiles(self.lag_s)
        self.figures = (round(lat50 * 1e3, 3), round(lat99 * 1e3, 3), round(lag50 * 1e3, 3), round(lag99 * 1e3, 3))

    def snapshot(self) -> PollFigures:
        """Figures for the status file (percentiles as of the last update)."""
        lat50, lat99, lag50, lag99 = self.figures
        return {"polls": self.polls, "missed_cycles": self.missed, "readings": self.readings,
                "bad_readings": self.bad_readings, "latency_ms_p50": lat50, "latency_ms_p99": lat99,
                "lag_ms_p50": lag50, "lag_ms_p99": lag99}


@dataclass
class OutputStats:
    """Figures of one output besides central (``outputs:``), as its delivery loop reports them."""

    state: str = "starting"  # starting | up | down | misconfigured | error
    error: str = ""
    readings: int = 0  # published and acknowledged by the output
    events: int = 0
    packs: int = 0
    errors: int = 0
    quarantined: int = 0
    last_flush: float | None = None
    #: the output's own counts (MQTT: commands_refused, rebirths)
    counters: dict[str, int] = field(default_factory=dict)


@dataclass
class AgentStats:
    """Overall figures: readings taken, buffered, written; central writer state."""

    started: float = field(default_factory=time.time)
    readings_taken: int = 0
    #: readings not stored: within their point's deadband and heartbeat (report by exception)
    readings_thinned: int = 0
    readings_dropped: int = 0
    rows_written: int = 0
    events_written: int = 0
    packs_written: int = 0
    write_errors: int = 0
    quarantined: int = 0
    central_state: str = "starting"
    central_error: str = ""
    last_flush: float | None = None
    #: this gateway's clock minus the central database's, seconds (None: not measured)
    clock_offset: float | None = None
    #: central transactions tried again after a deadlock or a Galera certification conflict
    conflicts_retried: int = 0
    #: with ``central.failover``: the node in use (0: the url's, 1..: the list's) and the moves between nodes
    central_node: int | None = None
    failovers: int = 0
    #: the outputs besides central, by name
    outputs: dict[str, OutputStats] = field(default_factory=dict)
    rate_window: deque[tuple[float, int]] = field(default_factory=lambda: deque(maxlen=30))

    def readings_per_second(self) -> float:
        """Readings taken per second over the last samples of the status loop."""
        now = time.time()
        self.rate_window.append((now, self.readings_taken))
        (t0, n0), (t1, n1) = self.rate_window[0], self.rate_window[-1]
        return (n1 - n0) / (t1 - t0) if t1 > t0 else 0.0
