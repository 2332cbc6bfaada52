"""What flows through the pipeline: readings (from drivers.base), events, and the devices they belong to."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, NotRequired, TypedDict

from drivers.base import Reading


class AlertChange(TypedDict):
    """An alert opened, or updated while it stays active (``alerts``)."""

    op: Literal["open", "update"]
    key: str  # stable for the alert's life; the gateway id is prefixed centrally
    ts_us: int
    device: str | None
    point: str | None
    alert_type: str
    severity: str  # low | medium | high | critical
    title: str
    message: str
    value: float | None
    system: str


class AttackChange(TypedDict):
    """An attack detection opened, or updated while it lasts (``attack_detections``)."""

    op: Literal["open", "update"]
    key: str
    ts_us: int
    opened_us: int
    attack_type: str
    confidence: float  # 0-100
    threat_level: str
    target_system: str
    description: str
    indicators: dict[str, Any]  # stored as JSON: the signals and the findings that fired


class Closed(TypedDict):
    """An alert resolved, or an attack detection ended."""

    op: Literal["close"]
    key: str
    ts_us: int


class PowerSample(TypedDict):
    """One row of ``power_readings``: the meter's roles (power, voltage, ...) and its load anomaly."""

    device: str
    ts_us: int
    fields: dict[str, float | bool]


class Metric(TypedDict):
    """One of the agent's own figures, a row of ``system_metrics``."""

    name: str
    value: float
    unit: str
    category: str
    ts_us: int


class DeviceStatus(TypedDict):
    """A device's status (online, degraded, offline, unknown) and reason; ``devices`` row update."""

    device: str
    status: str
    reason: str
    ts_us: int
    last_seen_us: NotRequired[int | None]


class GatewayBeat(TypedDict):
    """The gateway's own row of ``gateways``: sent at start, at each reload and every metrics_interval."""

    ts_us: int  # becomes ``last_seen``
    seq: int  # 1, 2, 3 ... within one run of the agent (``started_us``): orders its beats whatever the clock does
    version: str
    map_hash: str  # sha256 of the device map as loaded (includes spliced)
    host: str
    started_us: int
    interval_s: float  # the heartbeat's period: central judges online / stale / offline by it
    devices_up: int
    devices_degraded: int
    devices_down: int
    buffer_readings: int
    clock_offset_s: float | None  # this gateway's clock minus the central database's
    reload_us: int | None  # the last reload since start (None: none yet)
    reload_result: str | None
    stopped: bool  # the beat of a clean stop: the agent polls no more


AlertPayload = AlertChange | Closed
AttackPayload = AttackChange | Closed
Payload = AlertPayload | AttackPayload | PowerSample | Metric | DeviceStatus | GatewayBeat
EventKind = Literal["alert", "attack", "power", "metric", "device_status", "gateway"]


@dataclass(frozen=True)
class Event:
    """A non-reading record for the central DB; build one with the function of its kind
    (:func:`alert_event`, :func:`attack_event`, ...), which types its payload."""

    kind: str  # an EventKind; a buffer written by another version may hold others (skipped, logged)
    payload: Payload


def alert_event(payload: AlertPayload) -> Event:
    """An alert opened, updated or resolved."""
    return Event("alert", payload)


def attack_event(payload: AttackPayload) -> Event:
    """An attack detection opened, updated or ended."""
    return Event("attack", payload)


def power_event(payload: PowerSample) -> Event:
    """A ``power_readings`` row."""
    return Event("power", payload)


def metric_event(payload: Metric) -> Event:
    """A ``system_metrics`` row."""
    return Event("metric", payload)


def status_event(payload: DeviceStatus) -> Event:
    """A device's status change (or a refreshed ``last_seen``)."""
    return Event("device_status", payload)


def gateway_event(payload: GatewayBeat) -> Event:
    """The gateway's heartbeat: its ``gateways`` row."""
    return Event("gateway", payload)


#: One buffered record, as a sink may refuse it.
Record = Reading | Event


#: What a point's readings carry: a number (``value``), a boolean (``value`` 0/1) or text (``text``).
ValueKind = Literal["number", "boolean", "text"]


@dataclass(frozen=True)
class PointInfo:
    """A point as an output announces it (a Sparkplug B DBIRTH metric): name, kind of value, unit."""

    name: str
    kind: ValueKind = "number"
    unit: str | None = None
    role: str | None = None  # a power meter's reading it feeds (power, voltage, ...), as the map declares


@dataclass(frozen=True)
class DeviceInfo:
    """A device as registered with a sink (the central ``devices`` table; its points for outputs that announce them)."""

    device_id: str
    name: str | None = None
    type: str = "other"
    location: str | None = None
    protocol: str = "modbus"
    address: str | None = None
    points: tuple[PointInfo, ...] = ()

    @classmethod
    def from_dict(cls, fields: dict[str, Any]) -> DeviceInfo:
        """The inverse of :func:`dataclasses.asdict` (the writer process's ``devices`` message)."""
        points = tuple(PointInfo(**p) for p in fields.get("points", ()))
        return cls(**{**fields, "points": points})
