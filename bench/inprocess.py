"""The agent run in the benchmark's own process, for as long as a block runs."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from agent.pipeline.service import Agent
from agent.settings import AgentConfig


@asynccontextmanager
async def running_agent(cfg: AgentConfig) -> AsyncIterator[Agent]:
    """An agent polling ``cfg`` once ready; stopped (its backlog delivered) when the block ends."""
    agent = Agent(cfg)
    stop = asyncio.Event()
    task = asyncio.create_task(agent.run(stop))
    await agent.ready.wait()
    try:
        yield agent
    finally:
        stop.set()
        await task
