"""The MQTT output's JSON format against a real Mosquitto: one message per poll per device, a retained status."""

from __future__ import annotations

import json

from agent.buffer.disk import Pack
from agent.settings import MqttOutput
from agent.sinks.mqtt import MqttSink
from drivers.base import Reading
from tests.helpers import wait_until
from tests.infra.private_mosquitto import PrivateMosquitto
from tests.outputs.consumer import Host

T0 = 1_767_225_600.0  # 2026-01-01T00:00:00Z


def test_one_message_per_poll_with_values_qualities_and_a_retained_status(broker: PrivateMosquitto) -> None:
    cfg = MqttOutput.model_validate({"type": "mqtt", "url": broker.url, "format": "json", "topic_prefix": "site7"})
    sink = MqttSink(cfg, "gw1", clock=lambda: T0)
    ts = int(T0 * 1e6)
    with Host(broker.port, topics=["site7/#"]) as host:
        try:
            sink.write(Pack(readings=[Reading("m1", "v", ts, 230.5), Reading("m1", "mode", ts, None, "auto"),
                                      Reading("m1", "v", ts + 1_000_000, None, quality="bad:timeout"),
                                      Reading("m2", "v", ts, 231.0)]))
            wait_until(lambda: len(host.snapshot()) >= 4)
        finally:
            sink.close()
        wait_until(lambda: any(json.loads(m.payload)["state"] == "offline"
                               for m in host.snapshot() if m.topic == "site7/gw1/status"))
    got = [(m.topic, json.loads(m.payload)) for m in host.snapshot()]
    assert got[0] == ("site7/gw1/status", {"state": "online"})
    polls = [doc for topic, doc in got if topic == "site7/gw1/m1"]
    assert polls == [
        {"ts": "2026-01-01T00:00:00.000000Z", "ts_us": ts, "values": {"v": 230.5, "mode": "auto"},
         "quality": {"v": "good", "mode": "good"}},
        {"ts": "2026-01-01T00:00:01.000000Z", "ts_us": ts + 1_000_000, "values": {"v": None},
         "quality": {"v": "bad:timeout"}},
    ]
    assert [doc["values"] for topic, doc in got if topic == "site7/gw1/m2"] == [{"v": 231.0}]
