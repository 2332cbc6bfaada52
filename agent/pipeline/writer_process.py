"""The writer process: delivers the disk buffer into the central database (and the outputs) beside the polling agent.

Started by :class:`~agent.pipeline.writer_link.WriterLink` as ``python -m
agent.pipeline.writer_process``; reads a :class:`~agent.pipeline.writer_wire.WriterSpec` line,
then commands, from stdin and reports on the original stdout (sys.stdout goes to stderr, so
nothing a library prints can corrupt the messages). Logs go to stderr, as the agent's do. It
ignores SIGINT and SIGTERM (the agent drains it at shutdown) and dies with the agent.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import time
from typing import Any, BinaryIO

from agent.logsetup import setup_logging
from agent.pipeline.child import become_child, stdin_reader
from agent.pipeline.delivery import Delivery, Outcome
from agent.pipeline.outputs import DeliveryGroup, output_deliveries
from agent.pipeline.stats import AgentStats
from agent.pipeline.writer_wire import WriterSpec, encode, records_to_wire
from agent.records import DeviceInfo, Record
from agent.sinks.build import build_sink

log = logging.getLogger(__name__)

#: After the agent vanished, the running round gets this long before the process exits anyway.
ORPHAN_GRACE_SECONDS = 5.0


class Relay(Outcome):
    """Sends every outcome to the agent (the process's own stats are not read by anyone); an
    output's (``sink`` set) carry its name."""

    def __init__(self, out: BinaryIO, sink: str | None = None) -> None:
        super().__init__(AgentStats())
        self.out = out
        self.tag = {"sink": sink} if sink else {}

    def send(self, kind: str, **fields: Any) -> None:
        """One message to the agent."""
        try:
            self.out.write(encode(kind, **self.tag, **fields))
            self.out.flush()
        except (BrokenPipeError, ValueError):  # the agent is gone; stdin's EOF ends the process
            pass

    def written(self, readings: int, events: int, seconds: float | None) -> None:
        self.send("written", readings=readings, events=events, seconds=seconds)

    def idle(self) -> None:
        self.send("idle")

    def state(self, state: str, error: str) -> None:
        self.send("state", state=state, error=error)

    def content_error(self) -> None:
        self.send("content_error")

    def quarantined(self, refused: list[tuple[Record, str]], count: int | None = None) -> None:
        self.send("quarantined", count=len(refused) if count is None else count, records=records_to_wire(refused))

    def counters(self, counts: dict[str, int]) -> None:
        self.send("counters", counts=counts)


async def serve(out: BinaryIO) -> int:
    """Run the delivery loop until the agent says ``drain`` or goes away; the exit status."""
    commands = await stdin_reader()
    spec = WriterSpec.model_validate_json(await commands.readline())
    setup_logging(spec.log_level, spec.log_format)
    relay = Relay(out)
    sink = build_sink(spec.central, spec.gateway)
    central = spec.central
    first = Delivery(spec.buffer, sink, spec.devices, relay.stats, batch_size=central.batch_size,
                     flush_interval=central.flush_interval, connections=central.parallel_writes(), outcome=relay)
    outputs = output_deliveries(spec.buffer, spec.outputs, spec.gateway, spec.devices, relay.stats,
                                first.buffer_thread, outcome=lambda name: Relay(out, name))
    delivery = DeliveryGroup(first, outputs)
    await delivery.attach([sink.name, *(o.sink.name for o in outputs)])
    relay.send("ready", pid=os.getpid())
    stop = asyncio.Event()
    running = asyncio.create_task(delivery.run(stop), name="deliver")
    try:
        while line := await commands.readline():
            message = json.loads(line)
            kind = message["t"]
            if kind == "devices":
                delivery.update_devices([DeviceInfo.from_dict(d) for d in message["devices"]])
            elif kind == "wake":
                delivery.wake()
            elif kind == "drain":
                stop.set()
                await running
                empty = await delivery.drain(time.monotonic() + float(message["seconds"]))
                relay.send("drained", empty=empty)
                return 0
        log.warning("the agent went away; the writer process stops (unacknowledged packs are delivered later)")
        stop.set()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(running, ORPHAN_GRACE_SECONDS)
        return 0
    finally:
        await delivery.close()


def main() -> int:
    """Entry point of ``python -m agent.pipeline.writer_process``."""
    return asyncio.run(serve(become_child()))


if __name__ == "__main__":
    raise SystemExit(main())
