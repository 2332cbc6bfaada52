"""The MQTT output under faults: the agent killed -9, the central database away while the broker
stays, write commands sent to the gateway, a map reload that changes a device's points."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import yaml

from agent.configload import load_config_text
from agent.pipeline.service import Agent
from simulators.server import SimulatorThread
from tests.faults.plant import count_rows, plant
from tests.helpers import TcpProxy, async_wait_until, device_map, run_agent, wait_until
from tests.infra.private_mosquitto import PrivateMosquitto
from tests.outputs.consumer import Host
from tests.outputs.test_agent_outputs import central_keys, sparkplug_keys, with_outputs
from tests.outputs.test_sparkplug_sink import command

ROOT = Path(__file__).resolve().parents[2]
KILLS = 3


def bd_seqs(host: Host, kind: str) -> list[int]:
    return [next(m.long_value for m in r.payload.metrics if m.name == "bdSeq") for r in host.of(kind)]


def test_the_agent_killed_keeps_every_output_whole_and_each_death_matches_its_birth(
        broker: PrivateMosquitto, mariadb_url: str, tmp_path: Path) -> None:
    with plant(meters=4) as p, Host(broker.port) as host:
        text = with_outputs(device_map("gw-kill", mariadb_url, str(tmp_path / "buf"), p.devices("100ms"),
                                       writer="process", flush_interval="100ms"),
                            {"type": "mqtt", "url": broker.url, "group_id": "plant", "flush_interval": "100ms"})
        config = tmp_path / "edge.yaml"
        config.write_text(text)

        def start() -> subprocess.Popen[bytes]:
            return subprocess.Popen([sys.executable, "-m", "agent", "run", "-c", str(config)], cwd=tmp_path,
                                    env={**os.environ, "PYTHONPATH": str(ROOT)},
                                    stdout=subprocess.DEVNULL, stderr=open(tmp_path / "agent.log", "ab"))

        for kill in range(KILLS):
            proc = start()
            wait_until(lambda k=kill: len(host.of("NBIRTH")) > k and len(host.of("DDATA")) > 3 * (k + 1), 60)
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=10)
            wait_until(lambda k=kill: len(host.of("NDEATH")) > k, 30)  # the broker publishes the will
        proc = start()
        try:
            wait_until(lambda: len(host.of("NBIRTH")) > KILLS, 60)
            time.sleep(2)
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=60) == 0
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        wait_until(lambda: len(host.of("NDEATH")) > KILLS, 30)  # the clean shutdown's own NDEATH
    stored, distinct = count_rows(mariadb_url)
    assert stored == distinct
    published, historical = sparkplug_keys(host.snapshot())
    assert set(published) == central_keys(mariadb_url), "both outputs hold the same readings after 3 kills"
    # a pack published but not acknowledged when the agent died goes out again in the next
    # session, as historical: live, every reading arrives once
    live = [key for key, old in zip(published, historical, strict=True) if not old]
    assert len(live) == len(set(live)), "no reading is published live twice"
    assert len(published) - len(set(published)) <= KILLS * 5000, "at most a pack again per kill"
    births, deaths = bd_seqs(host, "NBIRTH"), bd_seqs(host, "NDEATH")
    assert births == deaths == list(range(KILLS + 1)), "bdSeq rises per session, kept across restarts"


def test_central_down_while_the_broker_is_up_keeps_publishing(
        broker: PrivateMosquitto, mariadb_url: str, mariadb_server: str, tmp_path: Path) -> None:
    host_port = mariadb_server.rsplit("@", 1)[1]
    proxy = TcpProxy(*host_port.split(":")[0:1], int(host_port.split(":")[1]))
    seen: dict[str, int] = {}

    async def scenario(agent: Agent) -> None:
        mqtt = agent.stats.outputs["mqtt"]
        await async_wait_until(lambda: agent.stats.rows_written > 100 and mqtt.readings > 100)
        thread.run_sync(proxy.cut)
        await async_wait_until(lambda: agent.stats.central_state == "down", timeout=30)
        published = mqtt.readings
        await async_wait_until(lambda: mqtt.readings > published + 300, timeout=30)
        seen["published_while_central_down"] = mqtt.readings - published
        thread.run_sync(proxy.restore)
        await async_wait_until(lambda: agent.stats.central_state == "up" and agent.delivery.buffer is not None
                               and agent.delivery.buffer.pending["central"] < 100, timeout=60)

    thread = SimulatorThread([])
    thread.start()
    try:
        thread.call(proxy.start).result(5)
        url = mariadb_url.replace(host_port, f"127.0.0.1:{proxy.port}")
        with plant(meters=3) as p, Host(broker.port) as host:
            agent = run_agent(with_outputs(device_map("gw-dbdown", url, str(tmp_path / "buf"), p.devices("100ms"),
                                                      writer="thread", connect_timeout="1s"),
                                           {"type": "mqtt", "url": broker.url, "flush_interval": "100ms"}), scenario)
    finally:
        thread.call(proxy.stop).result(5)
        thread.stop()
    assert seen["published_while_central_down"] > 300
    published, _ = sparkplug_keys(host.snapshot())
    assert set(published) == central_keys(mariadb_url)
    assert len(central_keys(mariadb_url)) == agent.stats.readings_taken


def test_write_commands_never_reach_a_device_and_a_reload_rebirths_the_changed_device(
        broker: PrivateMosquitto, sqlite_url: str, tmp_path: Path) -> None:
    with plant(meters=2) as p, Host(broker.port) as host:
        devices = p.devices("100ms")
        text = with_outputs(device_map("gw-cmd", sqlite_url, str(tmp_path / "buf"), devices, writer="thread"),
                            {"type": "mqtt", "url": broker.url, "group_id": "plant", "flush_interval": "100ms"})
        changed = yaml.safe_load(text)
        changed["devices"][0]["points"].append({"name": "extra", "address": 40, "type": "uint16", "unit": "A"})

        async def scenario(agent: Agent) -> None:
            await async_wait_until(lambda: agent.stats.outputs["mqtt"].readings > 50)
            for topic, name in [("spBv1.0/plant/DCMD/gw-cmd/meter-01", "p0"),
                                ("spBv1.0/plant/NCMD/gw-cmd", "Node Control/Next Server"),
                                ("spBv1.0/plant/DCMD/gw-cmd/meter-02", "p1")]:
                host.client.publish(topic, command(name, True), qos=1)
            await async_wait_until(lambda: agent.stats.outputs["mqtt"].counters.get("commands_refused") == 3)
            births = len(host.of("DBIRTH"))
            await agent.reload(load_config_text(yaml.safe_dump(changed)))
            await async_wait_until(lambda: len(host.of("DBIRTH")) >= births + 2, timeout=20)
            await async_wait_until(lambda: any(m.payload.metrics and any(
                x.alias == 21 for x in m.payload.metrics) for m in host.of("DDATA")), timeout=20)

        run_agent(text, scenario)
        codes = set(p.sim.requests.function_codes)
    assert codes <= {1, 2, 3, 4}, f"only read function codes went to the devices: {codes}"
    reborn = [m for m in host.of("DBIRTH") if m.device == "meter-01"][-1]
    assert [(x.name, x.alias) for x in reborn.payload.metrics][-1] == ("extra", 21)
    units = {x.name: list(x.properties.values) for x in reborn.payload.metrics}
    assert units["extra"][0].string_value == "A"
