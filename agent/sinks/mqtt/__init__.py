"""The MQTT output: readings published to a broker (Sparkplug B or JSON) from the same disk buffer.

A pack is acknowledged in the buffer once the broker acknowledged every message of it (QoS 1),
so a broker outage buffers for this output alone and loses nothing; a pack written again after a
failure is published again (subscribers see it twice at most: Sparkplug consumers can tell by
the metrics' timestamps). Commands are heard, and never reach a device: a Sparkplug
``Node Control/Rebirth`` is honoured, every other NCMD and every DCMD is refused and counted.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from agent.buffer.disk import Pack
from agent.records import DeviceInfo, Record
from agent.settings import MqttOutput
from agent.sinks import FailureKind
from agent.sinks.mqtt.codecs import Codec, JsonCodec, SparkplugCodec
from agent.sinks.mqtt.session import BrokerRefused, BrokerUnavailable, Session

log = logging.getLogger(__name__)

__all__ = ["MqttSink"]


def codec_for(cfg: MqttOutput, gateway: str, state_dir: Path | None = None) -> Codec:
    """The codec of the output's ``format``; a Sparkplug node keeps its next ``bdSeq`` in ``state_dir``."""
    if cfg.format == "sparkplug_b":
        return SparkplugCodec(cfg.group_id, gateway, state_dir / f"{cfg.name}.bdseq" if state_dir else None)
    return JsonCodec(cfg.topic_prefix, gateway)


class MqttSink:
    """Publishes packs to one broker; one session at a time, births first in each."""

    def __init__(self, cfg: MqttOutput, gateway: str, clock: Callable[[], float] = time.time,
                 state_dir: Path | None = None) -> None:
        self.cfg = cfg
        self.name = cfg.name
        self.codec = codec_for(cfg, gateway, state_dir)
        self.client_id = cfg.client_id_for(gateway)
        self.clock = clock
        self.session: Session | None = None
        #: acquisition times before this were buffered while no session was up: published as historical
        self.session_started_us = 0
        self._rebirth = threading.Event()
        self._refused_topics: set[str] = set()
        #: commands refused (writes: the agent is read-only toward devices)
        self.commands_refused = 0
        self.rebirths = 0

    def _now_ms(self) -> int:
        return int(self.clock() * 1000)

    def prepare(self, devices: Sequence[DeviceInfo]) -> None:
        """The devices births announce; a session already up announces them again (a rebirth)."""
        self.codec.set_devices(devices)
        if self.session is not None and self.session.alive:
            self._rebirth.set()

    def _command(self, topic: str, payload: bytes) -> None:
        """A command arrived (paho's thread): a rebirth is honoured, anything else refused."""
        if self.codec.command(topic, payload) == "rebirth":
            self._rebirth.set()
            return
        self.commands_refused += 1
        kind = topic.split("/")[2] if topic.count("/") >= 3 else topic
        if kind not in self._refused_topics:
            self._refused_topics.add(kind)
            log.warning("output %s refused a command on %s: the gateway never writes to devices "
                        "(logged once per kind; counted)", self.name, topic)

    def _session(self) -> Session:
        """The live session: a new one (will, connect, births) when there is none."""
        session = self.session
        if session is not None and session.alive:
            if self._rebirth.is_set():
                self._rebirth.clear()
                self.rebirths += 1
                session.publish(self.codec.births(self._now_ms()))
            return session
        if session is not None:
            session.close()
        session = Session(self.cfg, self.client_id, self.codec.will(), self._command, self.codec.subscriptions)
        try:
            session.open()
        except (BrokerUnavailable, BrokerRefused):
            self.codec.session_failed()
            raise
        self.session = session
        self.session_started_us = int(self.clock() * 1e6)
        self._rebirth.clear()
        session.publish(self.codec.births(self._now_ms()))
        log.info("output %s connected to %s", self.name, self.cfg.url)
        return session

    def write(self, pack: Pack) -> None:
        """Publish the pack's readings and device events; returns once the broker has them all."""
        session = self._session()
        now = self._now_ms()
        session.publish(self.codec.readings(pack.readings, now, self.session_started_us)
                        + self.codec.events(pack.events, now))

    def write_isolating(self, pack: Pack) -> list[tuple[Record, str]]:
        """Publish record by record; those that cannot be encoded are refused."""
        session = self._session()
        now = self._now_ms()
        refused: list[tuple[Record, str]] = []
        messages = []
        for reading in pack.readings:
            try:
                messages += self.codec.readings([reading], now, self.session_started_us)
            except (ValueError, TypeError, UnicodeError) as exc:
                refused.append((reading, f"{type(exc).__name__}: {exc}"))
        session.publish(messages + self.codec.events(pack.events, now))
        return refused

    def classify(self, exc: BaseException) -> FailureKind:
        """Refused credentials need an operator; a lost or absent broker is an outage; anything else
        (a record that cannot be encoded) is the records'."""
        if isinstance(exc, BrokerRefused):
            return "misconfigured"
        if isinstance(exc, BrokerUnavailable | OSError):
            return "unavailable"
        return "content"

    def error_text(self, exc: BaseException) -> str:
        """The exception's message, first line."""
        return (str(exc) or type(exc).__name__).splitlines()[0][:300]

    def counters(self) -> dict[str, int]:
        """Commands refused (every write command) and rebirths done on request."""
        return {"commands_refused": self.commands_refused, "rebirths": self.rebirths,
                "unannounced": self.codec.unannounced}

    def reset(self) -> None:
        """Drop the session after a failure: the next write connects afresh (new will, births).
        A session still connected says its NDEATH first (a clean DISCONNECT discards the will)."""
        if self.session is not None:
            self.session.close(last=self.codec.goodbye())
            self.session = None

    def close(self) -> None:
        """Say goodbye as the will would have (Sparkplug NDEATH, JSON ``offline``) and disconnect."""
        if self.session is not None:
            self.session.close(last=self.codec.goodbye())
            self.session = None
