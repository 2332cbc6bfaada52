"""One MQTT connection to the broker (paho-mqtt), as the MQTT output uses it: connect with a will,
publish a batch and wait for the broker's acknowledgements, hear commands."""

from __future__ import annotations

import logging
import ssl
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.reasoncodes import ReasonCode

from agent.settings import MqttOutput
from agent.sinks.mqtt.sparkplug import Message

log = logging.getLogger(__name__)

#: how long a batch may wait without any PUBACK arriving before the connection counts as lost
ACK_TIMEOUT = 10.0
#: CONNACK refusals that mean "not now" (an outage), not "not you" (3.1.1 code 3 and MQTT 5's 136/137/159)
BUSY_REFUSALS = {3, 136, 137, 159}
#: QoS 1 messages in flight at once (paho's default is 20: too few for a pack of DDATA)
MAX_INFLIGHT = 500


class BrokerUnavailable(Exception):
    """The broker cannot be reached, or the connection was lost: buffer and retry."""


class BrokerRefused(Exception):
    """The broker refused the gateway's credentials or client id: an operator must act."""


def _password(cfg: MqttOutput) -> str | None:
    return cfg.password_file.read_text(encoding="utf-8").strip() if cfg.password_file else None


class Session:
    """A connected client; dead (``alive`` False) once the connection drops: make a new one."""

    def __init__(self, cfg: MqttOutput, client_id: str, will: Message | None,
                 on_message: Callable[[str, bytes], None], subscriptions: Sequence[str]) -> None:
        self.cfg = cfg
        self._connected = threading.Event()
        self._refused: str | None = None
        self._busy = False
        self.alive = False
        self._subscriptions = list(subscriptions)
        self._on_message = on_message
        client = paho.Client(CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=True,
                             protocol=paho.MQTTv311, reconnect_on_failure=False)
        client.connect_timeout = cfg.connect_timeout
        client.max_inflight_messages_set(MAX_INFLIGHT)
        if will is not None:
            client.will_set(will.topic, will.payload, qos=1, retain=will.retain)
        if cfg.username is not None:
            client.username_pw_set(cfg.username, _password(cfg))
        if cfg.url.startswith("mqtts://"):
            tls = cfg.tls
            client.tls_set(ca_certs=str(tls.ca) if tls and tls.ca else None,
                           certfile=str(tls.cert) if tls and tls.cert else None,
                           keyfile=str(tls.key) if tls and tls.key else None, cert_reqs=ssl.CERT_REQUIRED)
            client.tls_insecure_set(bool(tls and not tls.verify_hostname))
        client.on_connect = self._connect_done
        client.on_disconnect = self._disconnected
        client.on_message = self._message
        self.client = client

    def open(self) -> None:
        """Connect and wait for the broker's CONNACK (raises :class:`BrokerUnavailable` or :class:`BrokerRefused`)."""
        host, port = self.cfg.host_port
        try:
            self.client.connect(host, port, keepalive=max(5, int(self.cfg.keepalive)))
        except ssl.SSLCertVerificationError as exc:  # a setting to fix (tls.ca, the broker's name), not an outage
            raise BrokerRefused(f"the broker {host}:{port} presented a certificate the gateway does not trust: "
                                f"{exc.verify_message or exc}") from exc
        except (OSError, ssl.SSLError) as exc:
            raise BrokerUnavailable(f"cannot connect to {host}:{port}: {exc}") from exc
        self.client.loop_start()
        if not self._connected.wait(self.cfg.connect_timeout) or not self.alive:
            self.close()
            if self._refused and not self._busy:
                raise BrokerRefused(f"the broker {host}:{port} refused the connection: {self._refused}")
            raise BrokerUnavailable(f"no answer to CONNECT from {host}:{port} within {self.cfg.connect_timeout:g} s")

    def _connect_done(self, client: paho.Client, userdata: Any, flags: Any, reason: ReasonCode,
                      properties: Any) -> None:
        if reason.is_failure:
            self._refused, self._busy = str(reason), reason.value in BUSY_REFUSALS
        else:
            self.alive = True
            for topic in self._subscriptions:
                client.subscribe(topic, qos=1)
        self._connected.set()

    def _disconnected(self, client: paho.Client, userdata: Any, flags: Any, reason: ReasonCode,
                      properties: Any) -> None:
        if self.alive:
            log.debug("MQTT connection to %s closed: %s", self.cfg.url, reason)
        self.alive = False
        self._connected.set()

    def _message(self, client: paho.Client, userdata: Any, message: paho.MQTTMessage) -> None:
        try:
            self._on_message(message.topic, bytes(message.payload))
        except Exception:  # paho's network thread must survive whatever a command holds
            log.exception("output %s: a message on %s could not be handled", self.cfg.name, message.topic)

    def publish(self, messages: Sequence[Message]) -> None:
        """Publish in order and wait until the broker acknowledged every one (QoS 1), or until they
        were written to the socket (QoS 0); raises :class:`BrokerUnavailable` as soon as the
        connection drops, or when the whole batch is not acknowledged within :data:`ACK_TIMEOUT`."""
        if not self.alive:
            raise BrokerUnavailable(f"not connected to {self.cfg.url}")
        infos = [self.client.publish(m.topic, m.payload, qos=self.cfg.qos, retain=m.retain) for m in messages]
        deadline = time.monotonic() + ACK_TIMEOUT  # moved on by every acknowledgement
        for info in infos:
            try:
                while not info.is_published():
                    if not self.alive:
                        raise BrokerUnavailable(f"connection to {self.cfg.url} lost")
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        raise BrokerUnavailable(f"the broker at {self.cfg.url} acknowledged nothing for "
                                                f"{ACK_TIMEOUT:g} s")
                    info.wait_for_publish(min(0.5, remaining))
            except (RuntimeError, ValueError) as exc:
                raise BrokerUnavailable(f"publish to {self.cfg.url} failed: {exc}") from exc
            deadline = time.monotonic() + ACK_TIMEOUT

    def close(self, last: Message | None = None) -> None:
        """Disconnect (after publishing ``last``, e.g. the NDEATH of a clean shutdown) and stop the network thread."""
        try:
            if last is not None and self.alive:
                self.client.publish(last.topic, last.payload, qos=1, retain=last.retain).wait_for_publish(2.0)
        except (RuntimeError, ValueError):
            pass
        self.alive = False
        self.client.disconnect()
        self.client.loop_stop()
