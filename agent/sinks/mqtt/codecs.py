"""What the MQTT output publishes, per format: Sparkplug B (an edge node) or plain JSON."""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal, Protocol

from google.protobuf.message import DecodeError

from agent.buffer.private_files import write_private
from agent.records import DeviceInfo, DeviceStatus, Event
from agent.sinks.mqtt.sparkplug import EdgeNode, Message, parse, rebirth_requested
from drivers.base import GOOD, Reading

log = logging.getLogger(__name__)

#: what a received command asked for: a rebirth (honoured) or anything else (refused: read-only)
CommandVerdict = Literal["rebirth", "refused"]


class Codec(Protocol):
    """Turns the buffer's records into MQTT messages for one format."""

    #: topics to subscribe to (commands)
    subscriptions: list[str]

    @property
    def unannounced(self) -> int:
        """Readings not published because the format had not announced their point."""

    def set_devices(self, devices: Sequence[DeviceInfo]) -> None:
        """The devices (and points) the next births announce."""

    def will(self) -> Message:
        """Start a session: its MQTT will (what subscribers see if the gateway vanishes)."""

    def session_failed(self) -> None:
        """The session whose will :meth:`will` gave never connected."""

    def births(self, now_ms: int) -> list[Message]:
        """Published first in every session and on a rebirth."""

    def readings(self, readings: Sequence[Reading], now_ms: int, historical_before_us: int) -> list[Message]:
        """The readings' messages; those acquired before ``historical_before_us`` were buffered during an outage."""

    def events(self, events: Sequence[Event], now_ms: int) -> list[Message]:
        """Messages for the events this format carries (device deaths and births)."""

    def goodbye(self) -> Message:
        """Published at a clean shutdown, as the will would have been."""

    def command(self, topic: str, payload: bytes) -> CommandVerdict:
        """What a message on a subscribed topic asks for."""


def _read_counter(path: Path | None) -> int:
    """The number kept in ``path`` (0 when there is none yet, or it is unreadable)."""
    try:
        return int(path.read_text().strip()) if path is not None else 0
    except (OSError, ValueError):
        return 0


def _statuses(events: Sequence[Event]) -> list[DeviceStatus]:
    return [e.payload for e in events if e.kind == "device_status"]  # type: ignore[misc]


class SparkplugCodec:
    """Sparkplug B: NBIRTH/DBIRTH, DDATA by alias, DDEATH when a device goes offline, NDEATH as the will.

    ``bd_seq_file`` keeps the next session's ``bdSeq`` across restarts (the specification has it
    increase by one per CONNECT, so a host can tell an old session's NDEATH from the new one's).
    """

    def __init__(self, group: str, node: str, bd_seq_file: Path | None = None) -> None:
        self.bd_seq_file = bd_seq_file
        self.node = EdgeNode(group, node, _read_counter(bd_seq_file))
        self.subscriptions = [self.node.topic("NCMD"), self.node.topic("DCMD") + "/+"]
        self._down: set[str] = set()

    def set_devices(self, devices: Sequence[DeviceInfo]) -> None:
        self.node.set_devices(devices)

    @property
    def unannounced(self) -> int:
        """Readings not published: their point was in no birth."""
        return self.node.unannounced

    def will(self) -> Message:
        will = self.node.new_session()
        self._keep()
        return will

    def session_failed(self) -> None:
        self.node.session_failed()
        self._keep()

    def _keep(self) -> None:
        if self.bd_seq_file is not None:
            write_private(self.bd_seq_file, f"{self.node.next_bd_seq}\n".encode())

    def births(self, now_ms: int) -> list[Message]:
        """NBIRTH, every DBIRTH, then a DDEATH for each device known to be down."""
        out = self.node.births(now_ms)
        return out + [self.node.device_death(device, now_ms) for device in sorted(self._down)]

    def readings(self, readings: Sequence[Reading], now_ms: int, historical_before_us: int) -> list[Message]:
        """DDATA; a device declared dead publishes nothing until it answers again, and then its
        DBIRTH comes first (its status event, in the round's events, may follow later)."""
        out: list[Message] = []
        live = list(readings)
        if self._down:
            live = []
            known = self.node.by_id
            for r in readings:
                if r.device in self._down:
                    if r.quality != GOOD or r.device not in known:
                        continue
                    self._down.discard(r.device)
                    out.append(self.node.device_birth(known[r.device], now_ms))
                live.append(r)
        return out + self.node.data(live, now_ms, historical_before_us)

    def events(self, events: Sequence[Event], now_ms: int) -> list[Message]:
        out = []
        known = self.node.by_id
        for status in _statuses(events):
            device = status["device"]
            if status["status"] == "offline" and device not in self._down and device in known:
                self._down.add(device)
                out.append(self.node.device_death(device, now_ms))
            elif status["status"] in ("online", "degraded") and device in self._down:
                self._down.discard(device)
                out.append(self.node.device_birth(known[device], now_ms))
        return out

    def goodbye(self) -> Message:
        return self.node.death()

    def command(self, topic: str, payload: bytes) -> CommandVerdict:
        if topic == self.node.topic("NCMD"):
            try:
                if rebirth_requested(parse(payload)):
                    return "rebirth"
            except DecodeError:  # an undecodable command is refused, never acted on
                pass
        return "refused"


def _iso(ts_us: int) -> str:
    return datetime.fromtimestamp(ts_us / 1e6, UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


class JsonCodec:
    """One JSON message per poll per device on ``<prefix>/<gateway>/<device>``; a retained
    ``<prefix>/<gateway>/status`` (``online``, and ``offline`` as the will)."""

    def __init__(self, prefix: str, gateway: str) -> None:
        self.base = f"{prefix.rstrip('/')}/{gateway}"
        self.subscriptions: list[str] = []

    @property
    def unannounced(self) -> int:
        """JSON messages name their points: every reading is published."""
        return 0

    def set_devices(self, devices: Sequence[DeviceInfo]) -> None:
        """JSON messages name their points: nothing to announce."""

    def _status(self, state: str) -> Message:
        return Message(f"{self.base}/status", json.dumps({"state": state}).encode(), retain=True)

    def will(self) -> Message:
        return self._status("offline")

    def session_failed(self) -> None:
        """Nothing numbered per session."""

    def births(self, now_ms: int) -> list[Message]:
        return [self._status("online")]

    def readings(self, readings: Sequence[Reading], now_ms: int, historical_before_us: int) -> list[Message]:
        polls: dict[tuple[str, int], list[Reading]] = {}
        for r in readings:
            polls.setdefault((r.device, r.ts_us), []).append(r)
        out = []
        for (device, ts_us), rows in polls.items():
            doc = {"ts": _iso(ts_us), "ts_us": ts_us,
                   "values": {r.point: r.text if r.text is not None else r.value for r in rows},
                   "quality": {r.point: r.quality for r in rows}}
            if ts_us < historical_before_us:
                doc["historical"] = True
            out.append(Message(f"{self.base}/{device}", json.dumps(doc, separators=(",", ":")).encode()))
        return out

    def events(self, events: Sequence[Event], now_ms: int) -> list[Message]:
        return [Message(f"{self.base}/{s['device']}/status", json.dumps(
            {"status": s["status"], "reason": s["reason"], "ts": _iso(s["ts_us"])}).encode(), retain=True)
            for s in _statuses(events)]

    def goodbye(self) -> Message:
        return self._status("offline")

    def command(self, topic: str, payload: bytes) -> CommandVerdict:
        return "refused"

