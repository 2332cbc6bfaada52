"""Delivery: appends are never lost to a cancellation at shutdown."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from agent.central.engine import make_engine
from agent.pipeline.delivery import Delivery
from agent.pipeline.stats import AgentStats
from agent.settings import BufferConfig, CentralConfig
from agent.sinks.central import CentralSink
from drivers.base import Reading


def test_a_cancelled_append_still_lands_in_the_buffer(tmp_path: Path, sqlite_url: str) -> None:
    central = CentralConfig(url=sqlite_url)
    delivery = Delivery(BufferConfig(path=tmp_path / "buf"), CentralSink(make_engine(central), "gw"), [], AgentStats(),
                        batch_size=central.batch_size, flush_interval=central.flush_interval)

    async def main() -> int:
        buffer = await delivery.open()
        busy = asyncio.ensure_future(delivery.in_buffer(time.sleep, 0.3))  # the writer holding the thread
        await asyncio.sleep(0.05)
        put = asyncio.ensure_future(delivery.put([Reading("d", "p", i, 1.0) for i in range(30)], [], None))
        await asyncio.sleep(0.05)
        put.cancel()  # shutdown cancels the committer while its append waits in the queue
        await busy
        await asyncio.sleep(0.1)
        rows = await delivery.in_buffer(lambda: buffer.reading_rows)
        await delivery.close()
        return rows

    assert asyncio.run(main()) == 30
