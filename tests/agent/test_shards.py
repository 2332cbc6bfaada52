"""Polling processes (``workers:``): devices spread by endpoint, one gateway seen whole, restarts, reloads."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import yaml

from agent.configload import load_config_text
from agent.pipeline.child import SPLIT_FROM_POINTS_PER_S as AUTO_SHARD_FROM
from agent.pipeline.service import Agent
from agent.pipeline.shards import ShardPool, worker_count
from simulators.power_meter import PowerMeter
from simulators.server import ModbusSimulator, SimulatorThread, free_port
from tests.faults.plant import POINTS_PER_METER, count_rows
from tests.helpers import async_wait_until, device_map, run_agent


def _meter(device_id: str, port: int, unit: int) -> dict[str, object]:
    points = [{"name": f"p{k}", "address": 2 * k, "type": "float32"} for k in range(POINTS_PER_METER)]
    return {"id": device_id, "type": "power_meter", "host": "127.0.0.1", "port": port, "unit_id": unit,
            "interval": "100ms", "timeout": "100ms", "points": points}


def _map(url: str, buffer: Path, devices: list[dict[str, object]], workers: int | str = 2) -> str:
    doc = yaml.safe_load(device_map("gw-shards", url, str(buffer), devices, flush_interval="100ms"))
    doc["workers"] = workers
    return yaml.safe_dump(doc)


def test_auto_shards_a_large_map_only() -> None:
    assert worker_count("auto", AUTO_SHARD_FROM - 1) == 1
    assert worker_count("auto", AUTO_SHARD_FROM) == (os.cpu_count() or 1)
    assert worker_count(3, 10.0) == 3


def test_units_behind_one_endpoint_share_a_polling_process() -> None:
    cfg = load_config_text(_map("sqlite:///x.db", Path("buf"), [_meter(f"m{u}", 5020, u) for u in range(1, 9)]
                                + [_meter(f"other{p}", p, 1) for p in range(6000, 6040)], workers=3))
    pool = ShardPool(3, "gw")
    drivers = {d.id: pool.driver(d) for d in cfg.enabled_devices()}
    assert len({id(drivers[f"m{u}"].shard) for u in range(1, 9)}) == 1
    loads = sorted(len(shard.devices) for shard in pool.shards)
    assert loads == [16, 16, 16], "forty-eight devices spread by load; the eight units stay together"


def test_two_polling_processes_poll_every_device_into_one_buffer_and_one_status(
        mariadb_url: str, tmp_path: Path) -> None:
    sims = [ModbusSimulator({u: PowerMeter(seed=u) for u in (1, 2)}) for _ in range(3)]
    dead_port = free_port()
    with SimulatorThread(sims):
        devices = [_meter(f"m{i}-{u}", sim.port, u) for i, sim in enumerate(sims) for u in (1, 2)]
        devices.append(_meter("dead", dead_port, 1))

        async def scenario(agent: Agent) -> None:
            assert agent.shards is not None and len(agent.shards.shards) == 2
            await async_wait_until(lambda: all(agent.device_stats[d["id"]].polls > 5 for d in devices), timeout=30)
            snap = agent.snapshot()
            assert len([pid for pid in snap["polling"]["pids"] if pid]) == 2
            assert os.getpid() not in snap["polling"]["pids"]
            assert {d: s["state"] for d, s in snap["devices"].items()} == {
                **{d["id"]: "up" for d in devices if d["id"] != "dead"}, "dead": "down"}
            assert "connection" in snap["devices"]["dead"]["reason"]

        agent = run_agent(_map(mariadb_url, tmp_path / "buf", devices), scenario)
    stored, distinct = count_rows(mariadb_url)
    assert stored == distinct == agent.stats.readings_taken
    assert all(set(sim.requests.function_codes) <= {1, 2, 3, 4} for sim in sims), "read-only from every process"


def test_a_polling_process_killed_alone_comes_back_with_its_devices(mariadb_url: str, tmp_path: Path) -> None:
    sims = [ModbusSimulator({1: PowerMeter(seed=p)}) for p in range(4)]
    with SimulatorThread(sims):
        devices = [_meter(f"m{i}", sim.port, 1) for i, sim in enumerate(sims)]

        async def scenario(agent: Agent) -> None:
            assert agent.shards is not None
            await async_wait_until(lambda: all(s.polls > 3 for s in agent.device_stats.values()), timeout=30)
            victim = agent.shards.shards[0]
            assert victim.process is not None and len(victim.devices) == 2, "4 endpoints, 2 per process"
            mine = list(victim.devices)
            os.kill(victim.process.pid, signal.SIGKILL)
            await async_wait_until(lambda: agent.shards is not None and agent.shards.restarts == 1, timeout=30)
            readings = {d: agent.device_stats[d].readings for d in mine}
            await async_wait_until(lambda: all(agent.drivers[d].health.state == "up"
                                               and agent.device_stats[d].readings > readings[d] + 30 for d in mine),
                                   timeout=30)

        agent = run_agent(_map(mariadb_url, tmp_path / "buf", devices), scenario)
    stored, distinct = count_rows(mariadb_url)
    assert stored == distinct == agent.stats.readings_taken


def test_a_reload_adds_moves_and_removes_devices_across_polling_processes(mariadb_url: str, tmp_path: Path) -> None:
    sims = [ModbusSimulator({1: PowerMeter(seed=p), 2: PowerMeter(seed=p + 10)}) for p in range(3)]
    with SimulatorThread(sims):
        before = [_meter("a", sims[0].port, 1), _meter("b", sims[1].port, 1), _meter("c", sims[2].port, 1)]
        after = [_meter("a", sims[0].port, 1), _meter("b", sims[2].port, 2), _meter("d", sims[1].port, 2)]

        async def scenario(agent: Agent) -> None:
            await async_wait_until(lambda: all(agent.device_stats[d].polls > 3 for d in "abc"), timeout=30)
            served = sims[0].requests.reads_by_unit.get(1, 0)
            result = await agent.reload(load_config_text(_map(mariadb_url, tmp_path / "buf", after)))
            assert (result["added"], result["removed"], result["changed"]) == (["d"], ["c"], ["b"])
            polls = {d: agent.device_stats[d].polls for d in "abd"}
            await async_wait_until(lambda: all(agent.device_stats[d].polls > polls[d] + 3 for d in "abd"), timeout=30)
            assert sims[0].requests.reads_by_unit[1] > served, "the unchanged device kept polling"
            assert sims[2].requests.reads_by_unit.get(2, 0) > 0, "b moved to its new endpoint"
            c_reads = sims[2].requests.reads_by_unit[1]
            await async_wait_until(lambda: agent.device_stats["a"].polls > polls["a"] + 10, timeout=30)
            assert sims[2].requests.reads_by_unit[1] == c_reads, "c is no longer polled by any process"

        agent = run_agent(_map(mariadb_url, tmp_path / "buf", before), scenario)
    stored, distinct = count_rows(mariadb_url)
    assert stored == distinct == agent.stats.readings_taken
