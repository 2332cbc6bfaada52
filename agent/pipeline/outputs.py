"""Several sinks from one buffer: the central delivery and one per output (``outputs:``).

Each output drains the same disk buffer with its own cursor, on its own thread, and fails
alone: a broker outage buffers for MQTT without holding the central writes back, and the
reverse. The buffer keeps a record until every sink acknowledged it. The group answers the
agent (and the writer process) as a single :class:`~agent.pipeline.delivery.Delivery` would;
the central delivery is its first member and owns the buffer.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from agent.buffer.disk import DiskBuffer, PutResult
from agent.pipeline.delivery import BufferThread, Delivery, Outcome, OutputOutcome
from agent.pipeline.stats import AgentStats
from agent.records import DeviceInfo, Event
from agent.settings import BufferConfig, MqttOutput
from agent.sinks import Sink
from agent.sinks.mqtt import MqttSink
from drivers.base import Reading

T = TypeVar("T")


def output_sinks(outputs: Sequence[MqttOutput], gateway: str, buffer_cfg: BufferConfig) -> list[Sink]:
    """The sinks the map's ``outputs:`` configure (keeping their session counters beside the buffer)."""
    return [MqttSink(output, gateway, state_dir=buffer_cfg.path) for output in outputs]


def output_deliveries(buffer_cfg: BufferConfig, outputs: Sequence[MqttOutput], gateway: str,
                      devices: Sequence[DeviceInfo], stats: AgentStats, buffer_thread: BufferThread,
                      outcome: Callable[[str], Outcome] | None = None) -> list[Delivery]:
    """One delivery per output (one pack at a time: an MQTT session publishes in order), sharing
    ``buffer_thread``; ``outcome(name)`` reports each (default: into ``stats.outputs[name]``)."""
    make = outcome or (lambda name: OutputOutcome(stats, name))
    return [Delivery(buffer_cfg, sink, devices, stats, batch_size=cfg.batch_size, flush_interval=cfg.flush_interval,
                     connections=1, outcome=make(sink.name), buffer_thread=buffer_thread)
            for cfg, sink in zip(outputs, output_sinks(outputs, gateway, buffer_cfg), strict=True)]


class DeliveryGroup:
    """The central delivery first, then the outputs', over one buffer."""

    def __init__(self, central: Delivery, outputs: Sequence[Delivery]) -> None:
        self.central = central
        self.outputs = list(outputs)
        self.members = [central, *self.outputs]

    # --- what the agent reads of its delivery: the central one's
    @property
    def buffer(self) -> DiskBuffer | None:
        """The shared buffer."""
        return self.central.buffer

    @property
    def restarts(self) -> int:
        """The writer runs in this process: never restarted."""
        return self.central.restarts

    def pid(self) -> int | None:
        """The process the writers run in: this one."""
        return self.central.pid()

    def stall_seconds(self) -> float:
        """The central writer's stall (see :meth:`Delivery.stall_seconds`)."""
        return self.central.stall_seconds()

    async def in_buffer(self, func: Callable[..., T], *args: Any) -> T:
        """Run ``func`` on the (shared) buffer thread."""
        return await self.central.in_buffer(func, *args)

    # --- lifecycle
    def _share(self) -> DiskBuffer:
        buffer = self.central.buffer
        assert buffer is not None
        for member in self.outputs:
            member.buffer = buffer
        return buffer

    async def open(self) -> DiskBuffer:
        """Open (or recover) the buffer with a cursor per member."""
        await self.central.open([m.sink.name for m in self.outputs])
        return self._share()

    async def attach(self, sinks: Sequence[str]) -> DiskBuffer:
        """Attach to the buffer another process appends to (the writer process)."""
        await self.central.attach(sinks)
        return self._share()

    async def put(self, readings: Sequence[Reading], events: Sequence[Event],
                  state: dict[str, Any] | None) -> PutResult:
        """Append durably; wakes every member once a full batch of its own is waiting."""
        result = await self.central.put(readings, events, state)
        for member in self.outputs:
            member.wake_if_full()
        return result

    def wake(self) -> None:
        """A full batch waits: every member writes now."""
        for member in self.members:
            member.wake()

    def update_devices(self, devices: Sequence[DeviceInfo]) -> None:
        """Devices every member (re-)registers or announces before its next write."""
        for member in self.members:
            member.update_devices(devices)

    async def run(self, stop: asyncio.Event) -> None:
        """Every member's write loop until ``stop`` is set."""
        await asyncio.gather(*(member.run(stop) for member in self.members))

    async def drain(self, deadline: float) -> bool:
        """At shutdown: every member delivers what it can before ``deadline``; True if none has anything left."""
        results = await asyncio.gather(*(member.drain(deadline) for member in self.members))
        return all(results)

    async def close(self) -> None:
        """Close the outputs' sinks, then the central delivery (which closes the buffer)."""
        try:
            for member in self.outputs:
                await member.close_sink()
        finally:
            await self.central.close()
