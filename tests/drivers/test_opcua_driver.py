"""The OPC UA driver against the simulator: StatusCode mapping, timestamps, value types."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from asyncua import ua

from drivers.opcua.driver import OpcUaDriver, quality_of
from drivers.opcua.spec import Endpoint, NodeSpec
from simulators.opcua_plant import OpcUaPlant


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
