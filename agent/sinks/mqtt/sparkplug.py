"""Sparkplug B payloads and topics (Eclipse Sparkplug 3.0) for one edge node: births, data, deaths.

The payload schema is the Sparkplug B one (``org.eclipse.tahu.protobuf.Payload``), declared
here field by field from the specification and encoded by protobuf in a private descriptor
pool (no generated code, no clash with another Sparkplug module in the same process). Only the
fields an edge node publishes are declared; their numbers and types are the specification's.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

from agent.records import DeviceInfo, ValueKind
from drivers.base import GOOD, Reading

NAMESPACE = "spBv1.0"
#: Sparkplug B data types (specification, "Data Types")
INT32, INT64, DOUBLE, BOOLEAN, STRING = 3, 4, 10, 11, 12
DATATYPE_OF: dict[ValueKind, int] = {"number": DOUBLE, "boolean": BOOLEAN, "text": STRING}
#: the quality property's values as Sparkplug host applications read them
QUALITY_GOOD, QUALITY_UNCERTAIN, QUALITY_BAD = 192, 64, 0
REBIRTH = "Node Control/Rebirth"
BDSEQ = "bdSeq"
#: metrics per DDATA message (a pack of 5,000 readings of one device becomes several messages)
MAX_METRICS = 1000

_MESSAGES: dict[str, list[tuple[str, int, str, int, str]]] = {
    # name: [(field, number, label, protobuf type, message type name)]
    "Payload": [("timestamp", 1, "optional", 4, ""), ("metrics", 2, "repeated", 11, "Metric"),
                ("seq", 3, "optional", 4, ""), ("uuid", 4, "optional", 9, ""), ("body", 5, "optional", 12, "")],
    "Metric": [("name", 1, "optional", 9, ""), ("alias", 2, "optional", 4, ""), ("timestamp", 3, "optional", 4, ""),
               ("datatype", 4, "optional", 13, ""), ("is_historical", 5, "optional", 8, ""),
               ("is_transient", 6, "optional", 8, ""), ("is_null", 7, "optional", 8, ""),
               ("properties", 9, "optional", 11, "PropertySet"), ("int_value", 10, "optional", 13, ""),
               ("long_value", 11, "optional", 4, ""), ("float_value", 12, "optional", 2, ""),
               ("double_value", 13, "optional", 1, ""), ("boolean_value", 14, "optional", 8, ""),
               ("string_value", 15, "optional", 9, "")],
    "PropertySet": [("keys", 1, "repeated", 9, ""), ("values", 2, "repeated", 11, "PropertyValue")],
    "PropertyValue": [("type", 1, "optional", 13, ""), ("is_null", 2, "optional", 8, ""),
                      ("int_value", 3, "optional", 13, ""), ("long_value", 4, "optional", 4, ""),
                      ("float_value", 5, "optional", 2, ""), ("double_value", 6, "optional", 1, ""),
                      ("boolean_value", 7, "optional", 8, ""), ("string_value", 8, "optional", 9, "")],
}
_LABELS = {"optional": 1, "repeated": 3}


def _payload_class() -> Any:
    """The ``Payload`` message class, built from :data:`_MESSAGES` in a pool of its own."""
    package = "hacksky.sparkplug_b"
    file = descriptor_pb2.FileDescriptorProto(name="hacksky_sparkplug_b.proto", package=package, syntax="proto2")
    for name, fields in _MESSAGES.items():
        message = file.message_type.add(name=name)
        for field, number, label, type_, type_name in fields:
            message.field.add(name=field, number=number, label=_LABELS[label], type=type_,
                              type_name=f".{package}.{type_name}" if type_name else None)
    pool = descriptor_pool.DescriptorPool()
    pool.Add(file)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName(f"{package}.Payload"))


Payload = _payload_class()


def parse(data: bytes) -> Any:
    """A received payload (a command) as a ``Payload`` message."""
    payload = Payload()
    payload.ParseFromString(data)
    return payload


@dataclass(frozen=True)
class Message:
    """One MQTT publication."""

    topic: str
    payload: bytes
    retain: bool = False


class EdgeNode:
    """The Sparkplug B side of one gateway: topics, aliases and the sequence number.

    ``seq`` runs 0-255 over every NBIRTH (which resets it), DBIRTH, DDATA and DDEATH the node
    publishes in one MQTT session; ``bd_seq`` ties a session's NBIRTH to its NDEATH (the will).
    """

    def __init__(self, group: str, node: str, next_bd_seq: int = 0) -> None:
        self.group, self.node = group, node
        self.devices: list[DeviceInfo] = []
        self.by_id: dict[str, DeviceInfo] = {}
        self.alias: dict[tuple[str, str], int] = {}
        self.kind: dict[tuple[str, str], ValueKind] = {}
        #: the ``bdSeq`` of the current session, and of the next one
        self.bd_seq, self._next_bd_seq = next_bd_seq % 256, next_bd_seq % 256
        self.seq = 0
        #: readings not published: their point was in no birth
        self.unannounced = 0

    def topic(self, kind: str, device: str | None = None) -> str:
        """``spBv1.0/<group>/<kind>/<node>[/<device>]``."""
        base = f"{NAMESPACE}/{self.group}/{kind}/{self.node}"
        return f"{base}/{device}" if device else base

    def set_devices(self, devices: Sequence[DeviceInfo]) -> None:
        """The devices and points births announce. Aliases are numbered in map order; a point
        keeps its alias across map reloads, a new one gets the next free number."""
        self.devices = list(devices)
        self.by_id = {d.device_id: d for d in self.devices}
        kept, self.kind = self.alias, {}
        self.alias = {}
        next_alias = max(kept.values(), default=0) + 1
        for device in self.devices:
            for point in device.points:
                key = (device.device_id, point.name)
                if key in kept:
                    self.alias[key] = kept[key]
                else:
                    self.alias[key], next_alias = next_alias, next_alias + 1
                self.kind[key] = point.kind

    def _next_seq(self) -> int:
        seq = self.seq
        self.seq = (seq + 1) % 256
        return seq

    def new_session(self) -> Message:
        """Start a session: its ``bdSeq`` (0, 1, ... 255, 0) and its NDEATH, the MQTT will."""
        self.bd_seq, self._next_bd_seq = self._next_bd_seq, (self._next_bd_seq + 1) % 256
        return self.death()

    @property
    def next_bd_seq(self) -> int:
        """The ``bdSeq`` the next session will carry (kept across restarts by the caller)."""
        return self._next_bd_seq

    def session_failed(self) -> None:
        """The session never connected (no CONNECT reached a broker): its ``bdSeq`` is used again."""
        self._next_bd_seq = self.bd_seq

    def death(self) -> Message:
        """The current session's NDEATH: its ``bdSeq`` and nothing else."""
        payload = Payload()
        payload.metrics.add(name=BDSEQ, datatype=INT64, long_value=self.bd_seq)
        return Message(self.topic("NDEATH"), payload.SerializeToString())

    def births(self, now_ms: int) -> list[Message]:
        """NBIRTH (``seq`` 0, ``bdSeq`` of the session, the rebirth control) and a DBIRTH per device."""
        self.seq = 0
        node = Payload(timestamp=now_ms, seq=self._next_seq())
        node.metrics.add(name=BDSEQ, datatype=INT64, long_value=self.bd_seq, timestamp=now_ms)
        node.metrics.add(name=REBIRTH, datatype=BOOLEAN, boolean_value=False, timestamp=now_ms)
        out = [Message(self.topic("NBIRTH"), node.SerializeToString())]
        out += [self.device_birth(device, now_ms) for device in self.devices]
        return out

    def device_birth(self, device: DeviceInfo, now_ms: int) -> Message:
        """A DBIRTH: every point's name, alias, data type and engineering unit (values follow in DDATA)."""
        payload = Payload(timestamp=now_ms, seq=self._next_seq())
        for point in device.points:
            metric = payload.metrics.add(name=point.name, alias=self.alias[device.device_id, point.name],
                                         datatype=DATATYPE_OF[point.kind], timestamp=now_ms, is_null=True)
            if point.unit:
                _property(metric, "engUnit", STRING, string_value=point.unit)
        return Message(self.topic("DBIRTH", device.device_id), payload.SerializeToString())

    def device_death(self, device: str, now_ms: int) -> Message:
        """A DDEATH: the device stopped answering."""
        payload = Payload(timestamp=now_ms, seq=self._next_seq())
        return Message(self.topic("DDEATH", device), payload.SerializeToString())

    def data(self, readings: Iterable[Reading], now_ms: int, historical_before_us: int) -> list[Message]:
        """DDATA messages, one per device (split every :data:`MAX_METRICS`); readings acquired before
        ``historical_before_us`` (buffered while the broker was away) are marked historical.

        A reading of a point no birth announced (a backlog from before a map reload removed it)
        is not published: Sparkplug hosts accept only born metrics. It is counted in ``unannounced``.
        """
        by_device: dict[str, list[Reading]] = {}
        alias = self.alias
        for reading in readings:
            if (reading.device, reading.point) in alias:
                by_device.setdefault(reading.device, []).append(reading)
            else:
                self.unannounced += 1
        out = []
        for device, rows in by_device.items():
            for start in range(0, len(rows), MAX_METRICS):
                payload = Payload(timestamp=now_ms, seq=self._next_seq())
                for reading in rows[start:start + MAX_METRICS]:
                    self._metric(payload, reading, historical_before_us)
                out.append(Message(self.topic("DDATA", device), payload.SerializeToString()))
        return out

    def _metric(self, payload: Any, r: Reading, historical_before_us: int) -> None:
        key = (r.device, r.point)
        kind = self.kind[key]
        metric = payload.metrics.add(alias=self.alias[key], timestamp=r.ts_us // 1000, datatype=DATATYPE_OF[kind])
        if r.ts_us < historical_before_us:
            metric.is_historical = True
        has_value = r.value is not None or r.text is not None
        if r.quality != GOOD and not (has_value and r.quality.startswith("uncertain")):
            metric.is_null = True
            _property(metric, "Quality", INT32, int_value=QUALITY_BAD)
            return
        if r.quality != GOOD:  # a value in doubt (an OPC UA uncertain status, the gateway's clock off)
            _property(metric, "Quality", INT32, int_value=QUALITY_UNCERTAIN)
        if kind == "text":
            metric.string_value = r.text if r.text is not None else str(r.value)
        elif r.value is None:  # text where a number was announced (an OPC UA string node): no value to give
            metric.is_null = True
        elif kind == "boolean":
            metric.boolean_value = bool(r.value)
        else:
            metric.double_value = r.value


def _property(metric: Any, key: str, type_: int, **value: Any) -> None:
    metric.properties.keys.append(key)
    metric.properties.values.add(type=type_, **value)


def rebirth_requested(payload: Any) -> bool:
    """True when an NCMD asks for ``Node Control/Rebirth``."""
    return any(m.name == REBIRTH and m.boolean_value for m in payload.metrics)
