"""MQTT output: Sparkplug B published at the scale load, its CPU, and the backlog after a broker outage.

The agent polls 500 devices x 20 points every second with ``central.url: null://`` (so the MQTT
output is the only real one) and an MQTT output to a private Mosquitto (QoS 1, Sparkplug B).
Measured over the same window: readings published and acknowledged per second, the agent's CPU
with and without the output (the difference is the output's cost), Mosquitto's CPU; as the raw
baseline, a bare paho-mqtt client publishing the same DDATA payloads (20 metrics each, QoS 1,
every PUBACK awaited) as fast as it can, in the same run. Then the broker is stopped for
``OUTAGE_S`` and started again: the backlog, the time until it is published, and the rate
(as a multiple of the live rate).
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from agent.records import DeviceInfo, PointInfo
from agent.sinks.mqtt.sparkplug import EdgeNode
from bench.load import AgentProcess, Farm, Scrape, cpu_seconds, device_map, warm_up, window
from drivers.base import Reading
from simulators.server import free_port
from tests.infra.private_mosquitto import PrivateMosquitto

TITLE = "MQTT output: Sparkplug B (QoS 1) at 500 devices x 20 points, 1 s"
COLUMNS = ["what", "seconds", "points/s", "vs baseline", "CPU %", "points per CPU-second", "Mosquitto CPU %",
           "missed", "lag p99 ms", "note"]
DEFAULT_SECONDS = 60.0
OUTAGE_S = 600.0
DEVICES, POINTS = 500, 20
PUBLISHED = "hacksky_output_published_readings_total"
PENDING = "hacksky_output_pending_readings"


def bare_paho(port: int, seconds: float) -> dict[str, float]:
    """Bare paho-mqtt: the agent's own DDATA payloads (20 float metrics) published at QoS 1, 500 in
    flight at most, every PUBACK awaited; points/s and points per CPU-second of this process."""
    node = EdgeNode("bench", "bare")
    node.set_devices([DeviceInfo("dev", points=tuple(PointInfo(f"p{i:03d}") for i in range(POINTS)))])
    messages = [node.data([Reading("dev", f"p{i:03d}", 1_000_000 * k, float(k)) for i in range(POINTS)], 0, 0)[0]
                for k in range(1000)]
    client = paho.Client(CallbackAPIVersion.VERSION2, client_id="bench-bare")
    client.max_inflight_messages_set(500)
    client.connect("127.0.0.1", port)
    client.loop_start()
    sent = 0
    cpu0, t0 = time.process_time(), time.monotonic()
    while time.monotonic() - t0 < seconds:
        infos = [client.publish(m.topic, m.payload, qos=1) for m in messages]
        for info in infos:
            info.wait_for_publish(30)
        sent += len(messages) * POINTS
    elapsed, cpu = time.monotonic() - t0, time.process_time() - cpu0
    client.disconnect()
    client.loop_stop()
    return {"seconds": elapsed, "points_per_s": sent / elapsed, "cpu_percent": 100 * cpu / elapsed,
            "points_per_cpu_s": sent / cpu}


def _rate(a: Scrape, b: Scrape, name: str) -> float:
    return (b.values.get(name, 0.0) - a.values.get(name, 0.0)) / (b.at - a.at)


def _agent(farm: Farm, tmp: Path, outputs: list[dict[str, Any]]) -> AgentProcess:
    tmp.mkdir(parents=True, exist_ok=True)
    port = free_port()
    config = device_map(farm, "null://", tmp, 1.0, port, {"writer": "thread"}, {"outputs": outputs})
    return AgentProcess(config, port, tmp)


def _measure(agent: AgentProcess, broker: PrivateMosquitto, seconds: float) -> tuple[dict[str, float], float]:
    time.sleep(warm_up(seconds))
    assert broker.proc is not None
    a, m0 = agent.scrape(), cpu_seconds(broker.proc.pid)
    time.sleep(seconds)
    b, m1 = agent.scrape(), cpu_seconds(broker.proc.pid)
    w = window(a, b)
    w["published_per_s"] = _rate(a, b, PUBLISHED)
    return w, 100 * (m1 - m0) / w["seconds"]


def run(seconds: float = DEFAULT_SECONDS, outage: float = OUTAGE_S,
        steps: list[tuple[int, int]] | None = None) -> dict[str, Any]:
    """Baseline, the agent without and with the output, then a broker outage and the catch-up
    (at ``steps[0]`` devices x points instead of 500 x 20 when given)."""
    devices, points = (steps or [(DEVICES, POINTS)])[0]
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        broker = PrivateMosquitto(tmp / "mosquitto")
        broker.start()
        farm = Farm(devices, points, tmp)
        try:
            bare = bare_paho(broker.port, min(seconds, 20.0))
            without = _agent(farm, tmp / "without", [])
            try:
                alone, _ = _measure(without, broker, seconds)
            finally:
                without.stop()
            output = {"type": "mqtt", "url": broker.url, "group_id": "bench", "flush_interval": "1s"}
            agent = _agent(farm, tmp / "with", [output])
            try:
                live, broker_cpu = _measure(agent, broker, seconds)
                before = agent.scrape()
                broker.stop()
                time.sleep(outage)
                down = agent.scrape()
                backlog = down.values.get(PENDING, 0.0)
                broker.start()
                back = agent.scrape()
                last = back
                while last.values.get(PENDING, 0.0) > 2 * live["points_per_s"] and last.at - back.at < 3 * outage:
                    time.sleep(1.0)
                    last = agent.scrape()
                catch_up = window(back, last)
                catch_up_rate = _rate(back, last, PUBLISHED)
            finally:
                agent.stop()
        finally:
            farm.stop()
            broker.stop()
    output_cpu = max(live["cpu_percent"] - alone["cpu_percent"], 1e-9)
    per_cpu = live["published_per_s"] / (output_cpu / 100)
    base = bare["points_per_cpu_s"]
    return {
        "devices": devices, "points": points, "outage_s": outage, "backlog": backlog, "catch_up_s": last.at - back.at,
        "catch_up_multiple_of_live": catch_up_rate / live["published_per_s"] if live["published_per_s"] else None,
        "results": [
            {"what": "bare paho-mqtt, same DDATA payloads, QoS 1 (baseline)", "seconds": bare["seconds"],
             "points/s": bare["points_per_s"], "vs baseline": 1.0, "CPU %": bare["cpu_percent"],
             "points per CPU-second": base, "note": "as fast as it can"},
            {"what": "agent, null central, no output", "seconds": alone["seconds"], "points/s": 0.0,
             "CPU %": alone["cpu_percent"], "missed": alone["missed"], "lag p99 ms": alone["lag_p99_ms"],
             "note": f"{alone['points_per_s']:,.0f} points/s polled"},
            {"what": "agent + MQTT output (its CPU: the difference)", "seconds": live["seconds"],
             "points/s": live["published_per_s"], "vs baseline": per_cpu / base if base else None,
             "CPU %": output_cpu, "points per CPU-second": per_cpu, "Mosquitto CPU %": broker_cpu,
             "missed": live["missed"], "lag p99 ms": live["lag_p99_ms"],
             "note": f"agent {live['cpu_percent']:.0f} % in all; vs baseline: points per CPU-second"},
            {"what": "broker stopped", "seconds": window(before, down)["seconds"], "points/s": 0.0,
             "missed": window(before, down)["missed"], "lag p99 ms": window(before, down)["lag_p99_ms"],
             "note": f"{backlog:,.0f} readings waiting for MQTT"},
            {"what": "catch-up (broker back -> backlog < 2 s)", "seconds": catch_up["seconds"],
             "points/s": catch_up_rate, "vs baseline": catch_up_rate / bare["points_per_s"],
             "CPU %": catch_up["cpu_percent"], "missed": catch_up["missed"], "lag p99 ms": catch_up["lag_p99_ms"],
             "note": f"{catch_up_rate / max(live['published_per_s'], 1e-9):.1f}x the live rate; vs baseline: points/s"},
        ]}
