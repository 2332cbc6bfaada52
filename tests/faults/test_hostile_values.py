"""Property: whatever a device serves, each reading is stored exactly or quarantined with an alert.

Hypothesis fills a real Modbus server's registers with arbitrary words, and a real OPC UA server's
String, ByteString and LocalizedText variables with arbitrary bytes (sent as they are, invalid
UTF-8 included); the real drivers read them and the real delivery path writes them to MariaDB in
strict and in lenient ``sql_mode`` and to SQLite.
"""

from __future__ import annotations

import asyncio
import itertools
import math
from collections.abc import Iterator
from pathlib import Path

import pytest
from asyncua import ua
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import event, text
from sqlalchemy.engine import Engine

from agent.central import migrate
from agent.central.engine import make_engine
from agent.central.writer import to_datetime
from agent.pipeline.delivery import Delivery
from agent.pipeline.stats import AgentStats
from agent.records import DeviceInfo, Record
from agent.settings import BufferConfig, CentralConfig, PointConfig
from agent.sinks.central import CentralSink
from drivers.base import Reading
from drivers.modbus import ConnectionPool, ModbusDriver
from drivers.opcua.driver import OpcUaDriver
from drivers.opcua.spec import Endpoint, NodeSpec
from simulators.server import ModbusSimulator, SimulatorThread
from simulators.store import RegisterImage
from tests.faults.hostile_opcua import NAMESPACE, HostileOpcUaServer, ServerThread

SIZES = {"int16": 1, "uint16": 1, "int32": 2, "uint32": 2, "float32": 2, "int64": 4, "uint64": 4, "float64": 4}
ORDERS = [("big", "big"), ("little", "little"), ("big", "little")]


def hostile_points() -> tuple[list[PointConfig], int]:
    """Every numeric type in three byte/word orders, strings, bits and coils; the registers they span."""
    points: list[PointConfig] = []
    address = 0
    for (type_, size), (byte_order, word_order) in itertools.product(SIZES.items(), ORDERS):
        points.append(PointConfig(name=f"{type_}_{byte_order[0]}{word_order[0]}", address=address, type=type_,
                                  byte_order=byte_order, word_order=word_order))
        address += size
    for length in (1, 8, 125):
        points.append(PointConfig(name=f"text_{length}", address=address, type="string", length=length))
        address += length
    points.append(PointConfig(name="flag", address=address, type="bool", bit=15))
    points.append(PointConfig(name="scaled", address=address + 1, type="float32", scale=1e300))
    points.append(PointConfig(name="coil", table="coil", address=0, type="bool"))
    return points, address + 3


POINTS, REGISTERS = hostile_points()


class RawDevice:
    """Serves whatever words it is given: no physics, no refresh."""

    def __init__(self) -> None:
        self.image = RegisterImage()
        self.load([0] * REGISTERS, False)

    def load(self, words: list[int], coil: bool) -> None:
        self.image.set("holding", 0, words)
        self.image.put_bit("coil", 0, coil)

    def refresh(self, now: float) -> None:
        """The registers change only when the test loads new ones."""


@pytest.fixture(scope="module")
def device() -> Iterator[tuple[RawDevice, int]]:
    raw = RawDevice()
    sim = ModbusSimulator({1: raw})
    with SimulatorThread([sim]):
        yield raw, sim.port


def _engine(url: str, sql_mode: str | None) -> Engine:
    engine = make_engine(CentralConfig(url=url))
    if sql_mode is not None:
        @event.listens_for(engine, "connect")
        def set_mode(dbapi_connection, record) -> None:  # type: ignore[no-untyped-def]
            with dbapi_connection.cursor() as cur:
                cur.execute(f"SET SESSION sql_mode = '{sql_mode}'")
    migrate.upgrade(engine)
    return engine


@pytest.fixture(params=["sqlite", "mariadb-strict", "mariadb-lenient"])
def central(request: pytest.FixtureRequest) -> Iterator[Engine]:
    backend = str(request.param)
    url = str(request.getfixturevalue("sqlite_url" if backend == "sqlite" else "mariadb_url"))
    mode = {"sqlite": None, "mariadb-strict": "STRICT_ALL_TABLES,NO_ENGINE_SUBSTITUTION",
            "mariadb-lenient": "NO_ENGINE_SUBSTITUTION"}[backend]
    engine = _engine(url, mode)
    yield engine
    engine.dispose()


def _stored(engine: Engine, readings: list[Reading]) -> dict[str, tuple[float | None, str | None, str]]:
    """point -> (value, value_text, quality) stored for this poll (its requests' timestamps)."""
    first, last = min(r.ts_us for r in readings), max(r.ts_us for r in readings)
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT point, value, value_text, quality FROM readings "
                                 "WHERE ts BETWEEN :first AND :last"),
                            {"first": to_datetime(first), "last": to_datetime(last)})
        return {r[0]: (r[1], r[2], r[3]) for r in rows}


async def _poll_modbus(port: int) -> list[Reading]:
    pool = ConnectionPool()
    driver = ModbusDriver("raw", "127.0.0.1", port, 1, POINTS, pool=pool, timeout=2.0)
    readings = await driver.read()
    await driver.close()
    pool.close_all()
    return readings


async def _deliver(engine: Engine, readings: list[Reading], buffer: Path, refused: list[tuple[Record, str]]) -> None:
    """The delivery path (disk buffer, central writer, isolation, quarantine) until the buffer is empty."""
    device = readings[0].device
    delivery = Delivery(BufferConfig(path=buffer), CentralSink(engine, "gw-hostile"), [DeviceInfo(device)],
                        AgentStats(), batch_size=CentralConfig().batch_size,
                        flush_interval=CentralConfig().flush_interval, on_quarantine=refused.extend)
    buf = await delivery.open()
    await delivery.put(readings, [], None)
    while buf.reading_rows:
        await delivery._write_round()
    await delivery.close()


WORD = st.integers(0, 0xFFFF)
#: words a device is likelier to hold than uniform noise: NaN/Inf patterns, sign bits, text bytes
EDGE_WORDS = st.sampled_from([0x0000, 0xFFFF, 0x7F80, 0xFF80, 0x7FC0, 0x7FF0, 0xFFF0, 0x8000, 0x7FFF,
                              0x00FF, 0xFF00, 0xC3A9, 0xEDA0, 0x0A0D, 0x2700, 0x5C27, 0x1B5B, 0xF09F])


def assert_stored_exactly_or_quarantined(engine: Engine, readings: list[Reading], names: set[str],
                                         refused: list[tuple[Record, str]]) -> None:
    """The invariant: each reading in the database as the driver made it, or in quarantine (alerted)."""
    stored = _stored(engine, readings)
    quarantined = {r.point for r, _ in refused if isinstance(r, Reading)}
    for r in readings:
        if r.point in quarantined:
            continue
        assert r.point in stored, f"{r.point} neither stored nor quarantined"
        value, value_text, quality = stored[r.point]
        assert quality == r.quality
        assert value_text == r.text, r.point
        if r.value is None:
            assert value is None
        else:
            assert value is not None and math.isfinite(value) and value == r.value, (r.point, r.value, value)
    assert set(stored) | quarantined == names


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(words=st.lists(WORD | EDGE_WORDS, min_size=REGISTERS, max_size=REGISTERS), coil=st.booleans())
def test_every_served_register_value_is_stored_exactly_or_quarantined(device: tuple[RawDevice, int], central: Engine,
                                                                      tmp_path_factory: pytest.TempPathFactory,
                                                                      words: list[int], coil: bool) -> None:
    raw, port = device
    raw.load(words, coil)
    refused: list[tuple[Record, str]] = []
    readings = asyncio.run(_poll_modbus(port))
    assert len(readings) == len(POINTS) and all(r.quality != "bad:timeout" for r in readings)
    asyncio.run(_deliver(central, readings, tmp_path_factory.mktemp("buf"), refused))
    assert_stored_exactly_or_quarantined(central, readings, {p.name for p in POINTS}, refused)


#: arbitrary bytes as asyncua sends them: a str with surrogate escapes goes out as the raw bytes
RAW_TEXT = st.binary(max_size=400).map(lambda b: b.decode("utf-8", "surrogateescape"))
UA_KINDS = {"s": ua.VariantType.String, "b": ua.VariantType.ByteString, "l": ua.VariantType.LocalizedText}


def _variant(kind: str, text: str) -> ua.DataValue:
    if kind == "b":
        value: object = text.encode("utf-8", "surrogateescape")
    elif kind == "l":
        value = ua.LocalizedText(text, "de")
    else:
        value = text
    return ua.DataValue(ua.Variant(value, UA_KINDS[kind]))


MAX_TEXTS = 12


@pytest.fixture(scope="module")
def ua_server() -> Iterator[ServerThread]:
    """One server for every example: a variable per kind and place in the list, refilled per example."""
    thread = ServerThread(HostileOpcUaServer({f"{kind}{i}": _variant(kind, "") for kind in UA_KINDS
                                              for i in range(MAX_TEXTS)}))
    with thread:
        yield thread


async def _poll_opcua(endpoint: str, names: list[str]) -> list[Reading]:
    driver = OpcUaDriver("ua", Endpoint(endpoint, timeout=3.0),
                         [NodeSpec(name, node=f"nsu={NAMESPACE};s={name}") for name in names])
    try:
        return await driver.read()
    finally:
        await driver.close()


@settings(max_examples=4, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(texts=st.lists(st.tuples(st.sampled_from(sorted(UA_KINDS)), RAW_TEXT), min_size=1, max_size=MAX_TEXTS))
def test_every_served_opcua_text_is_stored_exactly_or_quarantined(central: Engine, ua_server: ServerThread,
                                                                  tmp_path_factory: pytest.TempPathFactory,
                                                                  texts: list[tuple[str, str]]) -> None:
    values = {f"{kind}{i}": _variant(kind, text) for i, (kind, text) in enumerate(texts)}
    ua_server.call(ua_server.server.serve(values))
    readings = asyncio.run(_poll_opcua(ua_server.server.endpoint, list(values)))
    for r, (_, served) in zip(readings, texts, strict=True):  # this example's values, not the last one's
        if "\x00" not in served and len(served) <= 255 and not any("\udc80" <= c <= "\udcff" for c in served):
            assert r.text == served, (r.point, served)
    assert len(readings) == len(values) and all(not r.quality.startswith("bad:") for r in readings), readings
    for r in readings:
        assert r.text is not None and len(r.text) <= 255 and "\x00" not in r.text
        r.text.encode("utf-8")  # strict, as PyMySQL and sqlite3 encode it
    refused: list[tuple[Record, str]] = []
    asyncio.run(_deliver(central, readings, tmp_path_factory.mktemp("buf"), refused))
    assert_stored_exactly_or_quarantined(central, readings, set(values), refused)
    assert not refused, "valid, bounded text: nothing for the database to refuse"
