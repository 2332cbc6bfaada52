"""The agent's live state as one typed structure: read by ``/health``, ``/metrics``, ``status``,
the demo and the state file (which is this, as JSON)."""

from __future__ import annotations

from typing import NotRequired, TypedDict


class PollFigures(TypedDict):
    """A device's polling counters and recent percentiles."""

    polls: int
    missed_cycles: int
    readings: int
    bad_readings: int
    latency_ms_p50: float
    latency_ms_p99: float
    lag_ms_p50: float
    lag_ms_p99: float


class DeviceSnapshot(PollFigures):
    """One device: its driver's health and its polling figures."""

    state: str  # up | degraded | down | unknown
    reason: str
    errors: dict[str, int]


class BufferSnapshot(TypedDict):
    """What waits on disk."""

    readings: int
    events: int
    dropped: int
    path: str
    bytes: NotRequired[int]  # read on the buffer thread: /metrics only
    oldest_age_s: NotRequired[float]


class CentralSnapshot(TypedDict):
    """The writer toward the central database."""

    url: str  # redacted
    state: str  # starting | up | down | misconfigured | error
    error: str
    rows_written: int
    events_written: int
    write_errors: int
    quarantined: int
    last_flush: float | None
    stalled: bool
    stalled_for_s: float
    writer_pid: int | None  # the writer process, None while it is being (re)started
    writer_restarts: int  # times it died and was started again
    clock_offset_s: NotRequired[float | None]  # this gateway's clock minus the database's (None: not measured)
    conflicts_retried: NotRequired[int]  # transactions tried again after a deadlock or certification conflict
    node: NotRequired[str | None]  # with central.failover: host:port of the node in use
    failovers: NotRequired[int]  # moves from one node to another


class OutputSnapshot(TypedDict):
    """One output besides central (``outputs:``)."""

    url: str
    format: str
    state: str  # starting | up | down | misconfigured | error
    error: str
    readings: int  # published and acknowledged
    events: int
    errors: int
    pending: int  # readings in the buffer this output has not acknowledged
    last_flush: float | None
    counters: dict[str, int]  # the output's own (MQTT: commands_refused, rebirths)
    oldest_age_s: NotRequired[float]  # of the oldest reading it has not acknowledged: /metrics only
    dropped: NotRequired[int]  # readings it will never get: the buffer was full (/metrics only)


class OpenDetection(TypedDict):
    """The attack detection currently open."""

    attack_type: str
    confidence: float
    signals: list[str]
    since: float


class DetectionSnapshot(TypedDict):
    """Detection across signals."""

    rows_scored: int
    alarms: int
    opened: int
    score: float | None
    open_detection: OpenDetection | None


class PollingSnapshot(TypedDict):
    """The polling processes (``workers:``); none when the agent polls itself."""

    pids: list[int | None]  # None while one is being (re)started
    restarts: int  # times one died and was started again


class Snapshot(TypedDict):
    """The whole gateway."""

    gateway: str
    pid: int
    polling: PollingSnapshot
    updated: float
    started: float
    readings_taken: int
    readings_thinned: int
    readings_per_s: float
    open_alerts: int
    buffer: BufferSnapshot
    central: CentralSnapshot
    outputs: dict[str, OutputSnapshot]
    devices: dict[str, DeviceSnapshot]
    detection: DetectionSnapshot | None


class Health(TypedDict):
    """Readiness, as ``/health`` serves it (503 unless ``ready``)."""

    ready: bool
    gateway: str
    checks: dict[str, str]
    devices: dict[str, int]
