"""The OPC UA driver against the simulator: StatusCode mapping, timestamps, value types."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from asyncua import ua

from agent.central.schema import readings
from drivers.base import Reading
from drivers.opcua.driver import MAX_QUALITY, OpcUaDriver, quality_of, status_of
from drivers.opcua.spec import Endpoint, NodeSpec
from simulators.opcua_plant import OpcUaPlant
from tests.faults.hostile_opcua import HOSTILE_TEXT, NAMESPACE, HostileOpcUaServer, WireTap


def test_status_codes_map_to_good_uncertain_and_bad_with_their_names() -> None:
    assert quality_of(ua.StatusCode(ua.StatusCodes.Good)) == "good"
    assert quality_of(None) == "good"
    assert quality_of(ua.StatusCode(ua.StatusCodes.UncertainLastUsableValue)) == "uncertain:UncertainLastUsableValue"
    assert quality_of(ua.StatusCode(ua.StatusCodes.BadSensorFailure)) == "bad:BadSensorFailure"
    assert quality_of(ua.StatusCode(ua.StatusCodes.BadCommunicationError)) == "bad:BadCommunicationError"


def test_readings_carry_server_status_source_time_and_scaling() -> None:
    async def main() -> list:  # type: ignore[type-arg]
        plant = OpcUaPlant(update_every=3600)  # values stay as set below
        await plant.start()
        stamp = datetime(2026, 1, 2, 3, 4, 5, 600000, tzinfo=UTC)
        await plant.nodes["Plant.Outlet.Pressure"].write_value(ua.DataValue(
            ua.Variant(1.5, ua.VariantType.Double), StatusCode=ua.StatusCode(ua.StatusCodes.UncertainLastUsableValue),
            SourceTimestamp=stamp))
        await plant.nodes["Plant.Outlet.Flow"].write_value(ua.DataValue(
            ua.Variant(0.0, ua.VariantType.Double), StatusCode=ua.StatusCode(ua.StatusCodes.BadSensorFailure)))
        ns = "nsu=urn:hacksky:water-plant;s="
        points = [NodeSpec("pressure", node=f"{ns}Plant.Outlet.Pressure", scale=100.0, offset=1.0),
                  NodeSpec("flow", node=f"{ns}Plant.Outlet.Flow"),
                  NodeSpec("running", node=f"{ns}Plant.Pump1.Running")]
        driver = OpcUaDriver("ua", Endpoint(plant.endpoint, timeout=2.0), points)
        try:
            return await driver.read()
        finally:
            await driver.close()
            await plant.stop()

    pressure, flow, running = asyncio.run(main())
    assert (pressure.value, pressure.quality) == (151.0, "uncertain:UncertainLastUsableValue")
    assert pressure.ts_us == int(datetime(2026, 1, 2, 3, 4, 5, 600000, tzinfo=UTC).timestamp() * 1_000_000)
    assert (flow.value, flow.quality) == (None, "bad:BadSensorFailure")
    assert running.value in (0.0, 1.0) and running.quality == "good"


def test_every_status_code_maps_to_a_quality_that_fits_the_column_and_round_trips() -> None:
    names = [n for n in vars(ua.StatusCodes) if not n.startswith("_")]
    assert len(names) > 250
    hex_form = []
    for name in names:
        status = ua.StatusCode(getattr(ua.StatusCodes, name))
        quality = quality_of(status)
        assert len(quality) <= MAX_QUALITY <= readings.c.quality.type.length, quality  # type: ignore[attr-defined]
        if status.is_good():
            assert quality == "good", "every Good code (GoodClamped ...) is a good reading"
            continue
        severity = "uncertain" if status.is_uncertain() else "bad"
        back = status_of(quality)
        assert back is not None and back.name == name, f"{quality} does not map back to {name}"
        assert quality.startswith(f"{severity}:")
        if len(f"{severity}:{name}") <= MAX_QUALITY:
            assert quality == f"{severity}:{name}", "readable names are kept whenever they fit"
        else:
            hex_form.append(quality)
        limits = ua.StatusCode(status.value | 0x0400 | 0x0100 | 0x0001)  # info bits: overflow, limit high
        assert quality_of(limits) == quality, "info bits do not hide the code's name"
    assert hex_form == ["bad:0x811E0000"]  # BadEdited_OutOfRange_DominantValueChanged_DependentValueChanged


def test_codes_without_a_name_and_the_drivers_own_reasons() -> None:
    assert quality_of(ua.StatusCode(0x87770000)) == "bad:0x87770000"
    assert status_of("bad:0x87770000") == ua.StatusCode(0x87770000)
    assert quality_of(ua.StatusCode(0x40770000)) == "uncertain:0x40770000"
    assert status_of("good") == ua.StatusCode(ua.StatusCodes.Good)
    for own in ("bad:timeout", "bad:connection", "bad:no_value", "uncertain:bad_encoding", "bad:0xZZ"):
        assert status_of(own) is None


def test_invalid_utf8_from_a_server_becomes_valid_marked_text() -> None:
    async def main() -> tuple[list[Reading], bytes]:
        server = HostileOpcUaServer({name: dv for name, (dv, _, _) in HOSTILE_TEXT.items()})
        await server.start()
        tap = WireTap(server.port)
        await tap.start()
        points = [NodeSpec(name, node=f"nsu={NAMESPACE};s={name}") for name in HOSTILE_TEXT]
        driver = OpcUaDriver("plc", Endpoint(f"opc.tcp://127.0.0.1:{tap.port}/hostile", timeout=2.0), points)
        try:
            return await driver.read(), bytes(tap.from_server)
        finally:
            await driver.close()
            await tap.stop()
            await server.stop()

    readings, wire = asyncio.run(main())
    assert b"ok\xff\xfe!" in wire, "the server really sent bytes that are not UTF-8"
    got = {r.point: (r.text, r.quality) for r in readings}
    assert got == {name: (text, quality) for name, (_, text, quality) in HOSTILE_TEXT.items()}
    for r in readings:
        if r.text is not None:
            r.text.encode("utf-8")  # strict: what PyMySQL and SQLite do with it
            assert "\x00" not in r.text and len(r.text) <= 255
