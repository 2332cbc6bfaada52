"""A MariaDB Galera cluster on loopback under the agent's load: the node it writes to killed and
restarted, then the whole cluster killed and brought back. Counted against the device truth."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy.exc import OperationalError

from agent.buffer.disk import Pack
from agent.central import migrate
from agent.central.engine import make_engine
from agent.central.writer import LOCK_ATTEMPTS, CentralWriter, error_code
from agent.pipeline.service import Agent
from agent.records import DeviceInfo
from agent.settings import CentralConfig
from drivers.base import Reading
from tests.faults.conftest import FaultRow
from tests.faults.plant import count_rows, plant
from tests.faults.test_central_faults import drained
from tests.helpers import async_wait_until, device_map, run_agent
from tests.infra.galera import GaleraCluster, running_cluster

pytestmark = pytest.mark.galera
T0 = 1_780_000_000_000_000


@pytest.fixture(scope="module")
def galera() -> Iterator[GaleraCluster]:
    """Three synced nodes for the module."""
    with running_cluster() as cluster:
        yield cluster


@pytest.fixture
def database(galera: GaleraCluster) -> Iterator[str]:
    """An empty ``hacksky`` database on the cluster, dropped afterwards."""
    galera.execute("DROP DATABASE IF EXISTS hacksky", "CREATE DATABASE hacksky CHARACTER SET utf8mb4")
    yield "hacksky"
    for node in galera.nodes:  # any node that is up
        if node.state() == "Synced":
            galera.execute("DROP DATABASE IF EXISTS hacksky", node=node.index)
            break


def under_load(galera: GaleraCluster, tmp_path: Path, scenario: Callable[[Agent], Awaitable[None]],
               node: int) -> tuple[Agent, int, int]:
    """The plant polled by an agent on node 0 (nodes 1 and 2 to fail over to) while ``scenario``
    runs; checks every served reading stored once (counted on ``node``); (agent, stored, distinct)."""
    first, *others = galera.nodes
    with plant(meters=10) as p:
        agent = run_agent(device_map("gw-galera", url=first.url(), buffer=str(tmp_path / "buf"),
                                     devices=p.devices(), batch_size=2000, writer="process",
                                     failover=[f"127.0.0.1:{n.port}" for n in others]), scenario)
        served = p.readings_served()
    taken = agent.stats.readings_taken
    total, distinct = count_rows(galera.nodes[node].url("hacksky"))
    assert served == taken, "every reading the simulator served was taken by the agent"
    assert total == distinct == taken, f"lost {taken - distinct}, duplicated {total - distinct}"
    return agent, total, distinct


def test_the_node_the_agent_writes_to_killed_under_load_then_rejoining(
        galera: GaleraCluster, database: str, tmp_path: Path, fault_report: list[FaultRow]) -> None:
    observed: dict[str, float] = {}

    async def scenario(agent: Agent) -> None:
        await async_wait_until(lambda: agent.stats.rows_written > 1000, timeout=60)
        killed = time.monotonic()
        await asyncio.to_thread(galera.kill9, 0)
        written = agent.stats.rows_written
        await async_wait_until(lambda: agent.stats.rows_written > written + 2000, timeout=60)
        observed["failover"] = time.monotonic() - killed
        await asyncio.to_thread(galera.restart, 0)  # rejoins from its recovered position
        observed["recovery"] = await drained(agent)
        await asyncio.sleep(1.0)

    agent, total, distinct = under_load(galera, tmp_path, scenario, node=1)
    assert count_rows(galera.nodes[0].url(database)) == (total, distinct), "the rejoined node holds every row"
    assert agent.stats.failovers >= 1 and agent.stats.central_node in (1, 2), "it moved on, and stayed"
    fault_report.append(FaultRow(
        "Galera: the writer's node killed (kill -9) under load, rejoined", "SIGKILL node 0 of 3, restart it",
        total, total, 0, 0, observed["recovery"],
        f"writing again on another node {observed['failover']:.1f} s after the kill"))


def test_the_whole_cluster_killed_under_load_then_bootstrapped_again(
        galera: GaleraCluster, database: str, tmp_path: Path, fault_report: list[FaultRow]) -> None:
    observed: dict[str, float] = {}

    async def scenario(agent: Agent) -> None:
        await async_wait_until(lambda: agent.stats.rows_written > 1000, timeout=60)
        await asyncio.to_thread(galera.kill_all)
        await async_wait_until(lambda: agent.stats.central_state == "down", timeout=30)
        await asyncio.sleep(3.0)
        assert agent.delivery.buffer is not None
        observed["buffered"] = agent.delivery.buffer.reading_rows
        await asyncio.to_thread(galera.recover_all)  # the most advanced node bootstraps, the others join
        observed["recovery"] = await drained(agent)
        await asyncio.sleep(1.0)

    _, total, _ = under_load(galera, tmp_path, scenario, node=2)
    assert observed["buffered"] > 500, "polling went on into the buffer while no node was up"
    fault_report.append(FaultRow(
        "Galera: the whole cluster killed (kill -9 x 3) under load, bootstrapped again",
        "SIGKILL all 3 nodes, --wsrep-recover, bootstrap the most advanced, join the others",
        total, total, 0, 0, observed["recovery"], f"{int(observed['buffered'])} readings buffered meanwhile"))


def test_two_nodes_inserting_the_same_rows_at_once_lose_certification_and_retry(
        galera: GaleraCluster, database: str, fault_report: list[FaultRow]) -> None:
    """Two writers (the same gateway replayed on two nodes) insert the same readings at the same
    moment: one transaction of each pair loses certification (reported as a deadlock, 1213) and
    the writer tries it again at once; every row lands once."""
    engines = [make_engine(CentralConfig(url=node.url(database))) for node in galera.nodes[:2]]
    migrate.upgrade(engines[0])
    writers = [CentralWriter(engine, "gw-twice") for engine in engines]
    for writer in writers:
        writer.sync_devices([DeviceInfo("m1")])
    rounds, rows = 60, 50
    barrier = threading.Barrier(2)
    surfaced = [0, 0]

    def replay(k: int) -> None:
        for i in range(rounds):
            pack = Pack(readings=[Reading("m1", "p", T0 + (i * rows + j) * 1000, float(j)) for j in range(rows)])
            barrier.wait(timeout=60)
            while True:  # as delivery does after LOCK_ATTEMPTS conflicts in a row: the pack again
                try:
                    writers[k].write(pack)
                    break
                except OperationalError as exc:
                    assert error_code(exc) == 1213, exc
                    surfaced[k] += 1

    try:
        threads = [threading.Thread(target=replay, args=(k,)) for k in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=300)
        retried = sum(w.conflicts_retried for w in writers)
        assert retried > 0, "certification conflicts happened and were retried"
        assert sum(surfaced) < retried, "most conflicts never reached the caller"
        stored, distinct = count_rows(galera.nodes[2].url(database))
        assert stored == distinct == rounds * rows
        fault_report.append(FaultRow(
            "Galera: the same readings inserted on two nodes at once", f"{rounds} packs x 2 writers, in step",
            rounds * rows, stored, rounds * rows - distinct, stored - distinct, None,
            f"{retried} certification conflicts retried at once; {sum(surfaced)} reached the caller "
            f"after {LOCK_ATTEMPTS} attempts"))
    finally:
        for engine in engines:
            engine.dispose()
