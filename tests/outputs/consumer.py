"""An independent Sparkplug B host for tests: paho-mqtt subscribing, payloads decoded with the Eclipse
Tahu ``sparkplug_b.proto`` as compiled by protobuf (the ``tahutils`` package), not the agent's encoder."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

import paho.mqtt.client as paho
from google.protobuf.message import DecodeError
from paho.mqtt.enums import CallbackAPIVersion
from tahutils.tahu import sparkplug_b_pb2 as tahu


@dataclass
class Received:
    """One message as the host saw it."""

    topic: str
    kind: str  # NBIRTH, DBIRTH, DDATA, ...
    device: str | None
    payload: Any  # tahu Payload


@dataclass
class Host:
    """Subscribes to ``topics`` on the broker at ``port`` and keeps every message, decoded."""

    port: int
    topics: list[str] = field(default_factory=lambda: ["spBv1.0/#"])
    username: tuple[str, str] | None = None
    messages: list[Received] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._subscribed = threading.Event()
        self.client = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"test-host-{id(self)}")
        self.client.on_connect = lambda c, u, f, rc, p: [c.subscribe(t, qos=1) for t in self.topics]
        self.client.on_subscribe = lambda c, u, mid, rc, p: self._subscribed.set()
        self.client.on_message = self._message
        if self.username is not None:
            self.client.username_pw_set(*self.username)

    def __enter__(self) -> Host:
        self.client.connect("127.0.0.1", self.port)
        self.client.loop_start()
        assert self._subscribed.wait(10), "the test host could not subscribe"
        return self

    def __exit__(self, *exc: object) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    def _message(self, client: paho.Client, userdata: Any, message: paho.MQTTMessage) -> None:
        parts = message.topic.split("/")
        payload: Any = message.payload
        if parts[0] == "spBv1.0":
            decoded = tahu.Payload()
            try:
                decoded.ParseFromString(message.payload)
                payload = decoded
            except DecodeError:  # not Sparkplug (a test sends garbage as a command): kept as bytes
                pass
        with self._lock:
            self.messages.append(Received(message.topic, parts[2] if len(parts) > 2 else "",
                                          parts[4] if len(parts) > 4 else None, payload))

    def of(self, kind: str) -> list[Received]:
        """The messages of one kind, in arrival order."""
        with self._lock:
            return [m for m in self.messages if m.kind == kind]

    def snapshot(self) -> list[Received]:
        """Every message so far, in arrival order."""
        with self._lock:
            return list(self.messages)


def metric_value(metric: Any) -> Any:
    """A decoded metric's value by its datatype (Double, Boolean, String), None when is_null."""
    if metric.is_null:
        return None
    return {tahu.Double: metric.double_value, tahu.Boolean: metric.boolean_value,
            tahu.String: metric.string_value, tahu.Int64: metric.long_value}[metric.datatype]
