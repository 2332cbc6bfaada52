"""The sink seam: Delivery drives any output the same way; CentralSink's taxonomy on real databases."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
import uuid
from collections.abc import Sequence
from pathlib import Path

import pytest
from sqlalchemy import func, select

from agent.buffer.disk import Pack
from agent.central import schema
from agent.central.engine import make_engine
from agent.pipeline import delivery as delivery_module
from agent.pipeline.delivery import Delivery
from agent.pipeline.stats import AgentStats
from agent.records import DeviceInfo, Event, Record
from agent.settings import BufferConfig, CentralConfig
from agent.sinks import FailureKind, Sink
from agent.sinks.central import CentralSink
from agent.sinks.null import NullSink
from drivers.base import Reading
from tests.helpers import async_wait_until

T0 = 1_764_000_000_000_000
MARKER = "<refuse me>"


class Outage(Exception):
    """The test sink's server is away."""


class Denied(Exception):
    """The test sink refuses the gateway's credentials."""


class Refused(Exception):
    """The test sink refuses a record's content."""


KIND_OF: dict[type[BaseException], FailureKind] = {Outage: "unavailable", Denied: "misconfigured"}


class ListSink:
    """A second implementation of the seam: an in-memory store keyed like central (a replay changes
    nothing) that refuses readings whose text holds MARKER, follows a script of failing writes and
    can refuse the gateway's settings until told otherwise."""

    name = "list"

    def __init__(self, script: Sequence[Exception | None] = (), denied: bool = False) -> None:
        self.landed: list[Reading] = []  # in the order they first landed
        self._keys: set[tuple[str, str, int]] = set()
        self.script = list(script)  # one entry per write call: raise it, or None to write
        self.denied = denied
        self.prepared: list[list[str]] = []
        self.prepare_gate = threading.Event()
        self.prepare_gate.set()
        self.preparing = threading.Event()
        self.resets = 0
        self.closed = False

    def prepare(self, devices: Sequence[DeviceInfo]) -> None:
        self.preparing.set()
        self.prepare_gate.wait()
        if self.denied:
            raise Denied("access denied for user 'gw'")
        self.prepared.append([d.device_id for d in devices])

    def write(self, pack: Pack) -> None:
        failure = self.script.pop(0) if self.script else None
        if failure is not None:
            raise failure
        bad = [r for r in pack.readings if MARKER in (r.text or "")]
        if bad:
            raise Refused(f"{bad[0].point} holds the marker")
        self._store(pack.readings)

    def write_isolating(self, pack: Pack) -> list[tuple[Record, str]]:
        refused: list[tuple[Record, str]] = [(r, f"Refused: {r.point} holds the marker")
                                             for r in pack.readings if MARKER in (r.text or "")]
        self._store([r for r in pack.readings if MARKER not in (r.text or "")])
        return refused

    def _store(self, readings: Sequence[Reading]) -> None:
        for r in readings:
            if (r.device, r.point, r.ts_us) not in self._keys:
                self._keys.add((r.device, r.point, r.ts_us))
                self.landed.append(r)

    def classify(self, exc: BaseException) -> FailureKind:
        return KIND_OF.get(type(exc), "content")

    def error_text(self, exc: BaseException) -> str:
        return f"{type(exc).__name__}: {exc}"

    def counters(self) -> dict[str, int]:
        return {}

    def reset(self) -> None:
        self.resets += 1

    def close(self) -> None:
        self.closed = True


def _delivery(tmp_path: Path, sink: Sink, stats: AgentStats | None = None) -> Delivery:
    return Delivery(BufferConfig(path=tmp_path / "buf"), sink, [DeviceInfo("d1")], stats or AgentStats(),
                    batch_size=10, flush_interval=0.05)


def _readings(count: int, marked: Sequence[int] = ()) -> list[Reading]:
    return [Reading("d1", "label", T0 + i, None, MARKER) if i in marked else Reading("d1", "v", T0 + i, float(i))
            for i in range(count)]


async def _run_until_empty(delivery: Delivery) -> None:
    stop = asyncio.Event()
    loop = asyncio.ensure_future(delivery.run(stop))
    assert delivery.buffer is not None
    buffer = delivery.buffer
    await async_wait_until(lambda: not buffer.reading_rows and not buffer.event_rows)
    stop.set()
    await loop


def test_a_second_sink_gets_every_record_once_in_order_across_an_outage_and_refusals_are_quarantined(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setattr(delivery_module, "RETRY_MAX", 0.01)
    readings = _readings(50, marked=(13, 37))
    sink = ListSink(script=[None, Outage("connection refused"), Outage("connection refused")])
    stats = AgentStats()
    delivery = _delivery(tmp_path, sink, stats)

    async def main() -> list[tuple[str, dict[str, object], str]]:
        buffer = await delivery.open()
        for part in (readings[:20], readings[20:35], readings[35:]):
            await delivery.put(part, [], None)
        await _run_until_empty(delivery)
        quarantined = await delivery.in_buffer(buffer.quarantined)
        await delivery.close()
        return quarantined

    with caplog.at_level(logging.INFO, logger="agent.pipeline.delivery"):
        quarantined = asyncio.run(main())
    assert sink.landed == [r for i, r in enumerate(readings) if i not in (13, 37)]
    refusal = "Refused: label holds the marker"
    assert [(kind, payload["ts_us"], error) for kind, payload, error in quarantined] == [
        ("reading", T0 + 13, refusal), ("reading", T0 + 37, refusal)]
    assert (stats.quarantined, stats.rows_written, stats.central_state) == (2, 50, "up")
    assert stats.write_errors == 2 + 2  # two outage retries, two packs bisected
    assert sink.resets == 2 and sink.closed
    assert [r.getMessage() for r in caplog.records if "unavailable" in r.getMessage()] == [
        "sink list unavailable, buffering on disk: Outage: connection refused"]  # once, not once per retry


def test_a_sink_refusing_the_settings_is_misconfigured_until_fixed_and_then_loses_nothing(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(delivery_module, "RETRY_MAX", 0.01)
    readings = _readings(25)
    sink = ListSink(denied=True)
    stats = AgentStats()
    delivery = _delivery(tmp_path, sink, stats)

    async def main() -> int:
        buffer = await delivery.open()
        await delivery.put(readings, [], None)
        stop = asyncio.Event()
        loop = asyncio.ensure_future(delivery.run(stop))
        await async_wait_until(lambda: stats.central_state == "misconfigured")
        waiting = buffer.reading_rows
        sink.denied = False  # the operator fixed the credentials
        await async_wait_until(lambda: not buffer.reading_rows)
        stop.set()
        await loop
        await delivery.close()
        return waiting

    assert asyncio.run(main()) == 25
    assert stats.central_state == "up" and stats.central_error == ""
    assert sink.landed == readings and sink.prepared == [["d1"]]


def test_devices_changed_while_the_sink_prepares_are_registered_on_the_next_write(tmp_path: Path) -> None:
    sink = ListSink()
    sink.prepare_gate.clear()
    delivery = _delivery(tmp_path, sink)

    async def main() -> bool:
        await delivery.open()
        await delivery.put(_readings(30), [], None)
        drain = asyncio.ensure_future(delivery.drain(time.monotonic() + 30))
        await async_wait_until(sink.preparing.is_set)
        delivery.update_devices([DeviceInfo("d1"), DeviceInfo("d2")])
        sink.prepare_gate.set()
        delivered = await drain
        await delivery.close()
        return delivered

    assert asyncio.run(main())
    assert sink.prepared == [["d1"], ["d1", "d2"]]
    assert len(sink.landed) == 30


def test_drain_at_shutdown_keeps_the_backlog_on_disk_when_the_sink_is_away(tmp_path: Path) -> None:
    sink = ListSink(script=[Outage("connection refused")])
    delivery = _delivery(tmp_path, sink)

    async def main() -> tuple[bool, int]:
        buffer = await delivery.open()
        await delivery.put(_readings(15), [], None)
        delivered = await delivery.drain(time.monotonic() + 30)
        left = buffer.reading_rows
        await delivery.close()
        return delivered, left

    assert asyncio.run(main()) == (False, 15)
    assert sink.landed == []


def test_null_sink_counts_everything_delivered_to_it(tmp_path: Path) -> None:
    sink = NullSink()
    stats = AgentStats()
    delivery = _delivery(tmp_path, sink, stats)
    events = [Event("metric", {"name": "buffer_depth", "value": i, "ts_us": T0 + i}) for i in range(3)]

    async def main() -> bool:
        await delivery.open()
        await delivery.put(_readings(25), events, None)
        delivered = await delivery.drain(time.monotonic() + 30)
        await delivery.close()
        return delivered

    assert asyncio.run(main())
    assert (sink.devices, sink.readings, sink.events) == (1, 25, 3)
    assert sink.packs == stats.packs_written and stats.rows_written == 25


def test_central_sink_delivers_through_the_seam(tmp_path: Path, central_url: str) -> None:
    engine = make_engine(CentralConfig(url=central_url))
    sink = CentralSink(engine, "gw-seam")
    delivery = _delivery(tmp_path, sink)

    async def main() -> bool:
        await delivery.open()
        await delivery.put(_readings(35), [], None)
        delivered = await delivery.drain(time.monotonic() + 30)
        await delivery.close()
        return delivered

    assert asyncio.run(main())
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(schema.readings)).scalar_one() == 35
    engine.dispose()


def test_central_sink_tells_an_outage_from_refused_settings(mariadb_server: str) -> None:
    away = CentralSink(make_engine(CentralConfig(url="mysql+pymysql://root@127.0.0.1:1/none")), "gw")
    wrong = CentralSink(make_engine(CentralConfig(url=f"{mariadb_server}/hacksky_absent_{uuid.uuid4().hex[:8]}")),
                        "gw")
    verdicts = []
    for sink in (away, wrong):
        with pytest.raises(Exception) as caught:
            sink.prepare([DeviceInfo("d1")])
        verdicts.append((sink.classify(caught.value), sink.error_text(caught.value)))
        sink.close()
    (away_kind, _), (wrong_kind, wrong_text) = verdicts
    assert (away_kind, wrong_kind) == ("unavailable", "misconfigured")
    assert "Unknown database" in wrong_text


def test_central_sink_calls_a_refused_row_content_and_isolates_it(mariadb_url: str) -> None:
    sink = CentralSink(make_engine(CentralConfig(url=mariadb_url)), "gw-poison")
    sink.prepare([DeviceInfo("d1")])  # migrates the empty database first
    poison = Reading("d1", "label", T0, None, "x" * 300)  # value_text is VARCHAR(255); strict mode refuses it
    pack = Pack(readings=[Reading("d1", "v", T0, 1.0), poison])
    with pytest.raises(Exception) as caught:
        sink.write(pack)
    assert sink.classify(caught.value) == "content"
    refused = sink.write_isolating(pack)
    sink.close()
    assert [(record, "1406" in error or "too long" in error) for record, error in refused] == [(poison, True)]
