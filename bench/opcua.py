"""OPC UA: values/s of the agent's driver for 1,000 nodes, poll and subscribe, vs a bare asyncua client.

Baseline: a bare asyncua ``read_attributes`` of the same 1,000 NodeIds in one call, in a loop.
The simulator runs in the same process on its own thread (the machine's 2 cores are shared).
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from asyncua import Client, ua

from drivers.opcua.driver import OpcUaDriver
from drivers.opcua.spec import Endpoint, NodeSpec
from simulators.opcua_plant import NAMESPACE, OpcUaPlant, sensor_node
from simulators.server import SimulatorThread

NODES = 1000
TITLE = f"OPC UA, {NODES:,} nodes (asyncua simulator in the same process)"
COLUMNS = ["path", "values/s", "vs baseline", "note"]


async def _bare(endpoint: str, seconds: float) -> float:
    client = Client(endpoint, timeout=10)
    await client.connect()
    try:
        idx = await client.get_namespace_index(NAMESPACE)
        ids = [ua.NodeId(ua.String(sensor_node(k)), ua.Int16(idx)) for k in range(NODES)]
        n, started = 0, time.perf_counter()
        while time.perf_counter() - started < seconds:
            n += len(await client.uaclient.read_attributes(ids, ua.AttributeIds.Value))
        return n / (time.perf_counter() - started)
    finally:
        await client.disconnect()


async def _measure(plant: OpcUaPlant, sims: SimulatorThread, seconds: float) -> dict[str, Any]:
    points = [NodeSpec(f"s{k}", node=f"nsu={NAMESPACE};s={sensor_node(k)}") for k in range(NODES)]
    base = await _bare(plant.endpoint, seconds)
    poll = OpcUaDriver("poll", Endpoint(plant.endpoint, timeout=10.0), points)
    await poll.read()
    n, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        n += sum(1 for r in await poll.read() if r.good)
    poll_rate = n / (time.perf_counter() - started)
    sub = OpcUaDriver("sub", Endpoint(plant.endpoint, mode="subscribe", interval=0.2, timeout=10.0), points)
    await sub.read()
    await asyncio.sleep(1.0)
    await sub.read()
    n, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        await asyncio.sleep(0.2)
        n += len(await sub.read())
    sub_rate = n / (time.perf_counter() - started)
    await asyncio.to_thread(lambda: sims.call(plant.stop).result(10))
    await poll.read()
    await sub.read()
    await asyncio.to_thread(lambda: sims.call(plant.start).result(60))
    back = time.perf_counter()
    while not any(r.good for r in await poll.read()):
        await asyncio.sleep(0.05)
    poll_back = time.perf_counter() - back
    while not any(r.good for r in await sub.read()):
        await asyncio.sleep(0.05)
    sub_back = time.perf_counter() - back
    await poll.close()
    await sub.close()
    return {"results": [
        {"path": "bare asyncua Read of all nodes (baseline)", "values/s": base, "vs baseline": 1.0, "note": ""},
        {"path": "agent driver, poll", "values/s": poll_rate, "vs baseline": poll_rate / base,
         "note": f"{poll.read_requests} Reads"},
        {"path": "agent driver, subscribe", "values/s": sub_rate, "vs baseline": sub_rate / base,
         "note": f"server changes {NODES:,} values/s"},
        {"path": "recovery after a server restart, poll (s)", "values/s": poll_back, "vs baseline": None,
         "note": "from the server listening again to the first good value"},
        {"path": "recovery after a server restart, subscribe (s)", "values/s": sub_back, "vs baseline": None,
         "note": "session, nodes and subscription rebuilt"},
    ], "nodes": NODES}


def run(seconds: float = 3.0) -> dict[str, Any]:
    """Measure and return the figures."""
    logging.getLogger("asyncua").setLevel(logging.CRITICAL)
    plant = OpcUaPlant(sensors=NODES)
    with SimulatorThread([plant]) as sims:
        return asyncio.run(_measure(plant, sims, seconds))
