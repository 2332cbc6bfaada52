"""The writer in its own process, parallel packs acknowledged in order, one buffer cursor per sink."""

from __future__ import annotations

import asyncio
import os
import signal
import threading
from collections.abc import Sequence
from pathlib import Path

from agent.buffer.disk import DiskBuffer, Pack
from agent.pipeline.delivery import Delivery
from agent.pipeline.service import Agent
from agent.pipeline.stats import AgentStats
from agent.records import DeviceInfo, Event, Record
from agent.settings import BufferConfig
from agent.sinks import FailureKind
from drivers.base import Reading
from tests.faults.plant import count_rows, plant
from tests.helpers import async_wait_until, device_map, run_agent

T0 = 1_764_000_000_000_000


def _readings(count: int, start: int = 0) -> list[Reading]:
    return [Reading("d1", "v", T0 + i, float(i)) for i in range(start, start + count)]


def test_two_sinks_each_get_every_record_and_a_record_is_forgotten_once_both_have_it(tmp_path: Path) -> None:
    buf = DiskBuffer(tmp_path, 10**9, sinks=["central", "mqtt"])
    buf.put(_readings(10), [Event("metric", {"name": "m", "value": 1.0})])
    buf.put(_readings(10, 10))
    central = buf.take("central", 100)
    assert [r.value for r in central.readings] == list(range(20)) and len(central.events) == 1
    buf.ack(central)
    assert (buf.pending, buf.pending_events) == ({"central": 0, "mqtt": 20}, {"central": 0, "mqtt": 1})
    assert buf.reading_rows == 20, "the slower sink still needs every reading"
    first = buf.take("mqtt", 15)
    assert [r.value for r in first.readings] == list(range(10)), "packs end between chunks"
    buf.ack(first)
    buf.close()
    again = DiskBuffer(tmp_path, 10**9, sinks=["central", "mqtt"])
    assert again.pending == {"central": 0, "mqtt": 10} and again.oldest_ts_us() == T0 + 10
    assert [r.value for r in again.take("mqtt", 100).readings] == list(range(10, 20))
    again.close()
    alone = DiskBuffer(tmp_path, 10**9)  # the mqtt output removed from the map: its cursor holds nothing back
    assert alone.reading_rows == 0 and alone.oldest_ts_us() is None
    alone.close()


def test_a_full_buffer_drops_what_no_sink_has_taken_and_counts_it_per_sink(tmp_path: Path) -> None:
    buf = DiskBuffer(tmp_path, 256 * 1024, sinks=["central", "mqtt"])
    buf.put(_readings(500))
    held = buf.take("central", 500)  # in the central writer's hands, not yet acknowledged
    dropped = sum(buf.put(_readings(500, 500 * b)).dropped for b in range(1, 40))
    assert dropped > 0
    buf.ack(held)
    assert [r.value for r in held.readings] == list(range(500))
    assert buf.pending["central"] + dropped == 19_500 and buf.pending["mqtt"] + dropped == 20_000
    rest = buf.take("mqtt", 100_000).readings
    assert [r.value for r in rest[:500]] == list(range(500)), "the taken chunk survived the drops"
    assert len(rest) == buf.pending["mqtt"]
    buf.close()


def test_when_one_sink_lags_a_full_buffer_drops_only_what_that_sink_still_needs(tmp_path: Path) -> None:
    buf = DiskBuffer(tmp_path, 256 * 1024, sinks=["central", "mqtt"])
    buf.put(_readings(500))
    stuck = buf.take("mqtt", 500)  # the broker is away: this pack stays in the output's hands
    central: list[float | None] = []
    dropped = 0
    for b in range(1, 40):
        dropped += buf.put(_readings(500, 500 * b)).dropped
        pack = buf.take("central", 100_000)  # central keeps up
        central += [r.value for r in pack.readings]
        buf.ack(pack)
    assert dropped > 0
    assert central == [float(i) for i in range(20_000)], "the sink that keeps up lost nothing"
    assert buf.dropped_for("central") == 0 and buf.dropped_for("mqtt") == dropped
    buf.ack(stuck)
    rest = [r.value for r in buf.take("mqtt", 100_000).readings]
    assert len(stuck.readings) + len(rest) + dropped == 20_000
    assert rest[-1] == 19_999.0 and rest == sorted(rest), "the lagging sink keeps the newest, in order"
    buf.close()


class OrderedSink:
    """Records when each pack lands; the first pack of a round is the slowest, the second fails once."""

    name = "ordered"

    def __init__(self) -> None:
        self.landed: dict[tuple[str, str, int], Reading] = {}
        self.events: list[str] = []
        self.writes = 0
        self.lock = threading.Lock()
        self.third_done = threading.Event()
        self.failed_once = False

    def prepare(self, devices: Sequence[DeviceInfo]) -> None:
        pass

    def write(self, pack: Pack) -> None:
        first = pack.readings[0].value if pack.readings else None
        if first == 0:
            assert self.third_done.wait(10), "packs of a round are written in parallel"
        if first == 10 and not self.failed_once:
            self.failed_once = True
            raise ConnectionError("server went away")
        with self.lock:
            self.landed.update({(r.device, r.point, r.ts_us): r for r in pack.readings})
            self.events += [str(e.payload["name"]) for e in pack.events]
        if first == 20:
            self.third_done.set()

    def write_isolating(self, pack: Pack) -> list[tuple[Record, str]]:
        self.write(pack)
        return []

    def classify(self, exc: BaseException) -> FailureKind:
        return "unavailable"

    def error_text(self, exc: BaseException) -> str:
        return str(exc)

    def counters(self) -> dict[str, int]:
        return {}

    def reset(self) -> None:
        pass

    def close(self) -> None:
        pass


def test_parallel_packs_are_acknowledged_in_order_and_a_failed_one_is_written_again(tmp_path: Path) -> None:
    sink = OrderedSink()
    stats = AgentStats()
    delivery = Delivery(BufferConfig(path=tmp_path / "buf"), sink, [], stats, batch_size=10, flush_interval=0.05,
                        connections=3)

    async def main() -> tuple[tuple[tuple[int, int], int], int]:
        buffer = await delivery.open()
        for part in range(4):
            await delivery.put(_readings(10, 10 * part), [Event("metric", {"name": f"e{part}"})], None)
        try:
            await delivery._write_round()
        except Exception as exc:  # the second pack's outage ends the round
            assert "server went away" in str(exc)
        after_failure = await delivery.in_buffer(buffer.position, sink.name)
        assert await delivery.drain(asyncio.get_running_loop().time() + 30)
        left = buffer.reading_rows
        await delivery.close()
        return after_failure, left

    (position, event_seq), left = asyncio.run(main())
    first_chunk_end = (2, 0)
    assert position == first_chunk_end, "the cursor stops before the failed pack although the third landed"
    assert event_seq == 0, "a round's events are written after its readings"
    assert sorted(r.value for r in sink.landed.values()) == list(range(40)) and left == 0
    assert sink.events == ["e0", "e1", "e2", "e3"], "events land once, in order"
    assert stats.rows_written == 40


def test_the_writer_process_killed_alone_is_restarted_and_the_agent_loses_nothing(
        mariadb_url: str, tmp_path: Path) -> None:
    kills = 4
    with plant(meters=6) as p:
        yaml_text = device_map("gw-writer-kill", mariadb_url, str(tmp_path / "buf"), p.devices("100ms"),
                               batch_size=200, flush_interval="100ms", writer="process")

        async def scenario(agent: Agent) -> None:
            link = agent.delivery
            for kill in range(kills):
                await async_wait_until(lambda k=kill: link.process is not None and link.process.returncode is None
                                       and agent.stats.rows_written > 300 * (k + 1), timeout=60)
                assert link.process is not None
                os.kill(link.process.pid, signal.SIGKILL)
                await async_wait_until(lambda k=kill: link.restarts == k + 1, timeout=30)

        agent = run_agent(yaml_text, scenario)
    stored, distinct = count_rows(mariadb_url)
    assert agent.delivery.restarts == kills
    assert stored == distinct, "a pack written again after a kill is not stored twice"
    assert stored == agent.stats.readings_taken, "every reading taken reached the central database"
    assert agent.delivery.buffer is not None and agent.delivery.buffer.reading_rows == 0


def test_the_writer_on_a_thread_of_the_agent_delivers_everything_too(mariadb_url: str, tmp_path: Path) -> None:
    with plant(meters=3) as p:
        yaml_text = device_map("gw-writer-thread", mariadb_url, str(tmp_path / "buf"), p.devices("100ms"),
                               writer="thread", connections=2)

        async def scenario(agent: Agent) -> None:
            assert agent.delivery.pid() == os.getpid()
            await async_wait_until(lambda: agent.stats.rows_written > 300)

        agent = run_agent(yaml_text, scenario)
    stored, distinct = count_rows(mariadb_url)
    assert stored == distinct == agent.stats.readings_taken


def test_a_null_central_runs_the_whole_agent_and_discards_after_the_buffer(tmp_path: Path) -> None:
    with plant(meters=2) as p:
        yaml_text = device_map("gw-null", "null://", str(tmp_path / "buf"), p.devices("100ms"), writer="process")

        async def scenario(agent: Agent) -> None:
            await async_wait_until(lambda: agent.stats.rows_written > 100 and agent.stats.central_state == "up")

        agent = run_agent(yaml_text, scenario)
    assert agent.stats.rows_written == agent.stats.readings_taken
    assert agent.delivery.buffer is not None and agent.delivery.buffer.reading_rows == 0
