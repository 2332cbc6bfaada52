"""The MQTT output's Sparkplug B edge node against a real Mosquitto, read by an independent host."""

from __future__ import annotations

from typing import Any

import pytest
from tahutils.tahu import sparkplug_b_pb2 as tahu

from agent.buffer.disk import Pack
from agent.records import DeviceInfo, PointInfo, status_event
from agent.settings import MqttOutput
from agent.sinks.mqtt import MqttSink
from agent.sinks.mqtt.session import BrokerUnavailable
from drivers.base import Reading
from tests.helpers import wait_until
from tests.infra.private_mosquitto import PrivateMosquitto
from tests.outputs.consumer import Host, metric_value

T0 = 1_767_225_600.0  # 2026-01-01T00:00:00Z: the sink's clock, pinned
DEVICES = [DeviceInfo("meter1", points=(PointInfo("voltage", "number", "V"), PointInfo("breaker", "boolean"))),
           DeviceInfo("plc", points=(PointInfo("mode", "text"),))]


def sink_for(broker: PrivateMosquitto, clock: list[float], **extra: Any) -> MqttSink:
    cfg = MqttOutput.model_validate({"type": "mqtt", "url": broker.url, "group_id": "plant", **extra})
    sink = MqttSink(cfg, "gw1", clock=lambda: clock[0])
    sink.prepare(DEVICES)
    return sink


def readings(ts_us: int) -> list[Reading]:
    return [Reading("meter1", "voltage", ts_us, 230.5), Reading("meter1", "breaker", ts_us, 1.0),
            Reading("plc", "mode", ts_us, None, "auto"), Reading("meter1", "voltage", ts_us + 1000, None,
                                                                 quality="bad:timeout"),
            Reading("meter1", "voltage", ts_us + 2000, 230.7, quality="uncertain:clock")]


def test_births_then_data_by_alias_with_continuous_sequence_numbers(broker: PrivateMosquitto) -> None:
    clock = [T0]
    with Host(broker.port) as host:
        sink = sink_for(broker, clock)
        try:
            sink.write(Pack(readings=readings(int((T0 + 1) * 1e6))))
            wait_until(lambda: len(host.snapshot()) >= 5)
        finally:
            sink.close()
        wait_until(lambda: host.of("NDEATH"))
    kinds = [(m.kind, m.device) for m in host.snapshot()]
    assert kinds[:3] == [("NBIRTH", None), ("DBIRTH", "meter1"), ("DBIRTH", "plc")], "births come before data"
    assert [m.topic for m in host.snapshot()][:1] == ["spBv1.0/plant/NBIRTH/gw1"]
    nbirth = host.of("NBIRTH")[0].payload
    assert nbirth.seq == 0 and nbirth.timestamp == int(T0 * 1000)
    node_metrics = {m.name: m for m in nbirth.metrics}
    assert node_metrics["bdSeq"].datatype == tahu.Int64 and node_metrics["bdSeq"].long_value == 0
    assert node_metrics["Node Control/Rebirth"].datatype == tahu.Boolean
    # every DBIRTH metric: name, alias, datatype, engineering unit
    born = {(m.device, metric.name): metric for m in host.of("DBIRTH") for metric in m.payload.metrics}
    assert {k: (v.alias, v.datatype) for k, v in born.items()} == {
        ("meter1", "voltage"): (1, tahu.Double), ("meter1", "breaker"): (2, tahu.Boolean),
        ("plc", "mode"): (3, tahu.String)}
    unit = born["meter1", "voltage"].properties
    assert list(unit.keys) == ["engUnit"] and unit.values[0].string_value == "V"
    # DDATA by alias only, values and qualities as read, acquisition timestamps kept
    by_alias = {v.alias: k for k, v in born.items()}
    data = [(m.device, by_alias[metric.alias], metric.timestamp, metric_value(metric),
             metric.is_historical, [(k, v.int_value) for k, v in zip(metric.properties.keys, metric.properties.values,
                                                                         strict=True)])
            for m in host.of("DDATA") for metric in m.payload.metrics]
    ts = int((T0 + 1) * 1000)
    assert sorted(data, key=str) == sorted([
        ("meter1", ("meter1", "voltage"), ts, 230.5, False, []),
        ("meter1", ("meter1", "breaker"), ts, True, False, []),
        ("meter1", ("meter1", "voltage"), ts + 1, None, False, [("Quality", 0)]),
        ("meter1", ("meter1", "voltage"), ts + 2, 230.7, False, [("Quality", 64)]),  # a value in doubt
        ("plc", ("plc", "mode"), ts, "auto", False, []),
    ], key=str)
    assert all(not metric.HasField("name") for m in host.of("DDATA") for metric in m.payload.metrics)
    seqs = [m.payload.seq for m in host.snapshot() if m.kind != "NDEATH"]
    assert seqs == list(range(len(seqs))), "seq runs 0, 1, 2 ... from the NBIRTH"
    # a clean shutdown says NDEATH with the session's bdSeq
    death = host.of("NDEATH")[0].payload
    assert [(m.name, m.long_value) for m in death.metrics] == [("bdSeq", 0)]


def command(name: str, value: bool) -> bytes:
    payload = tahu.Payload()
    metric = payload.metrics.add()
    metric.name, metric.datatype, metric.boolean_value = name, tahu.Boolean, value
    return payload.SerializeToString()


def test_rebirth_is_honoured_and_every_write_command_refused(broker: PrivateMosquitto) -> None:
    clock = [T0]
    with Host(broker.port) as host:
        sink = sink_for(broker, clock)
        try:
            sink.write(Pack(readings=readings(int(T0 * 1e6))))
            wait_until(lambda: host.of("DDATA"))
            host.client.publish("spBv1.0/plant/DCMD/gw1/meter1", command("breaker", False), qos=1)
            host.client.publish("spBv1.0/plant/NCMD/gw1", command("Node Control/Reboot", True), qos=1)
            host.client.publish("spBv1.0/plant/NCMD/gw1", b"\xff\x00 not a payload \x9c", qos=1)
            wait_until(lambda: sink.commands_refused == 3)
            host.client.publish("spBv1.0/plant/NCMD/gw1", command("Node Control/Rebirth", True), qos=1)
            wait_until(lambda: sink._rebirth.is_set())
            sink.write(Pack(readings=readings(int((T0 + 1) * 1e6))))
            wait_until(lambda: len(host.of("NBIRTH")) == 2 and len(host.of("DDATA")) >= 4)
        finally:
            sink.close()
    assert sink.rebirths == 1
    order = [m.kind for m in host.snapshot() if m.kind not in ("NCMD", "DCMD")]
    second = order.index("NBIRTH", 1)
    assert order[second:second + 3] == ["NBIRTH", "DBIRTH", "DBIRTH"] and "DDATA" in order[second + 3:]
    rebirth = host.of("NBIRTH")[1].payload
    assert rebirth.seq == 0 and {m.name: m.long_value for m in rebirth.metrics}["bdSeq"] == 0, "same session"


def test_an_outage_raises_unavailable_and_the_next_session_marks_the_backlog_historical(tmp_path: Any) -> None:
    broker = PrivateMosquitto(tmp_path / "mosquitto")
    broker.start()
    clock = [T0]
    sink = sink_for(broker, clock, connect_timeout="1s")
    try:
        sink.write(Pack(readings=readings(int(T0 * 1e6))))
        broker.kill9()
        wait_until(lambda: sink.session is not None and not sink.session.alive)
        backlog = readings(int((T0 + 5) * 1e6))
        with pytest.raises(BrokerUnavailable) as failure:
            sink.write(Pack(readings=backlog))
        assert sink.classify(failure.value) == "unavailable"
        broker.start()
        clock[0] = T0 + 60  # back an outage later: readings of T0 + 5 were buffered meanwhile
        with Host(broker.port) as host:
            sink.reset()
            sink.write(Pack(readings=backlog, events=[status_event(
                {"device": "plc", "status": "offline", "reason": "timeout", "ts_us": int((T0 + 60) * 1e6)})]))
            wait_until(lambda: host.of("DDEATH"))
        nbirth = host.of("NBIRTH")[0].payload
        assert {m.name: m.long_value for m in nbirth.metrics}["bdSeq"] == 1, "a new session, a new bdSeq"
        metrics = [metric for m in host.of("DDATA") for metric in m.payload.metrics]
        assert len(metrics) == len(readings(0)) and all(metric.is_historical for metric in metrics)
        assert [m.device for m in host.of("DDEATH")] == ["plc"]
    finally:
        sink.close()
        broker.stop()


def test_a_dead_device_publishes_nothing_until_it_answers_and_then_is_born_first(broker: PrivateMosquitto) -> None:
    clock = [T0]
    ts = int(T0 * 1e6)
    offline = status_event({"device": "plc", "status": "offline", "reason": "timeout", "ts_us": ts})
    with Host(broker.port) as host:
        sink = sink_for(broker, clock)
        try:
            sink.write(Pack(readings=[Reading("plc", "mode", ts, None, quality="bad:timeout")], events=[offline]))
            sink.write(Pack(readings=[Reading("plc", "mode", ts + 1, None, quality="bad:timeout")]))
            sink.write(Pack(readings=[Reading("plc", "mode", ts + 2, None, "auto")]))  # it answers again
            sink.write(Pack(events=[offline]))  # and dies again
            sink.reset()  # a new session: births, then the device still dead dies again
            sink.write(Pack())
            wait_until(lambda: len(host.of("NBIRTH")) == 2 and len(host.of("DDEATH")) == 3)
        finally:
            sink.close()
        wait_until(lambda: len(host.of("NDEATH")) == 2)
    plc = [(m.kind, [x.timestamp for x in m.payload.metrics] if m.kind == "DDATA" else None)
           for m in host.snapshot() if m.device == "plc" or m.kind in ("NBIRTH", "NDEATH")]
    assert plc == [("NBIRTH", None), ("DBIRTH", None), ("DDATA", [ts // 1000]), ("DDEATH", None),
                   ("DBIRTH", None), ("DDATA", [ts // 1000]),  # the bad reading of ts + 1 was not published
                   ("DDEATH", None), ("NDEATH", None),  # reset() says NDEATH before it disconnects
                   ("NBIRTH", None), ("DBIRTH", None), ("DDEATH", None), ("NDEATH", None)]
    assert sink.counters()["unannounced"] == 0
