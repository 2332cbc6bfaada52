"""The protocol registry: one source per protocol the map can name, none falling into another's checks."""

from __future__ import annotations

import asyncio
from typing import Any, get_args

import pytest
from pydantic import Tag

from agent.configload import ConfigError, load_config_text
from agent.settings import DeviceConfig, ResolvedDevice
from agent.sources import SOURCES, SourceContext, UnknownProtocolError, source_for
from drivers.base import Driver
from drivers.modbus import ConnectionPool
from drivers.modbus.connection import Link
from drivers.opcua import OpcUaDriver

#: the smallest valid device of each registered protocol, as one line of a map
MINIMAL = {
    "modbus": "{id: dev, protocol: modbus, host: 127.0.0.1, port: 5020, points: [{name: a, address: 0}]}",
    "opcua": '{id: dev, protocol: opcua, endpoint: "opc.tcp://127.0.0.1:4840", points: [{name: a, node: "i=1"}]}',
}
#: one device per protocol whose map checks (that protocol's own) find a problem, and the message
INVALID = {
    "modbus": ("{id: dev, host: 127.0.0.1, points: [{name: a, table: coil, address: 0, type: uint16}]}",
               "plant.yaml:3:82: devices[0].points[0].type: coil points must be type bool"),
    "opcua": ('{id: dev, protocol: opcua, endpoint: "opc.tcp://plc:4840", points: [{name: a, path: Plant/A}]}',
              "plant.yaml:3:89: devices[0].points[0].path: a browse path starts at /Objects/, "
              "e.g. /Objects/2:Plant/2:Tank1/2:Level"),
}


def device_map(*devices: str) -> str:
    return "gateway: {id: gw1}\ndevices:\n" + "".join(f"  - {device}\n" for device in devices)


def resolved(*devices: str) -> list[ResolvedDevice]:
    return load_config_text(device_map(*devices)).enabled_devices()


def errors_of(text: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_config_text(text, "plant.yaml")
    return [str(i) for i in info.value.issues]


def union_models() -> dict[str, Any]:
    """Tag -> model of each member of the ``DeviceConfig`` discriminated union."""
    union, _discriminator = get_args(DeviceConfig)
    models = {}
    for member in get_args(union):
        model, *metadata = get_args(member)
        (tag,) = [m.tag for m in metadata if isinstance(m, Tag)]
        models[tag] = model
    return models


def test_device_union_and_registry_name_the_same_protocols_with_the_same_models() -> None:
    assert {tag: SOURCES[tag].model for tag in SOURCES} == union_models()
    for name, source in SOURCES.items():
        assert source.protocol == name
        assert get_args(source.model.model_fields["protocol"].annotation) == (name,)


def test_every_registered_protocol_has_a_minimal_device_and_an_invalid_one_here() -> None:
    assert set(MINIMAL) == set(INVALID) == set(SOURCES)


@pytest.mark.parametrize("protocol", sorted(SOURCES))
def test_each_source_builds_its_driver_for_a_minimal_device(protocol: str) -> None:
    (dev,) = resolved(MINIMAL[protocol])
    pool = ConnectionPool()
    driver: Driver = source_for(protocol).driver(dev.config, dev, SourceContext(pool=pool, gateway="gw1"))
    assert (driver.device_id, driver.health.state) == ("dev", "unknown")
    asyncio.run(driver.close())
    pool.close_all()


def test_modbus_devices_behind_one_host_and_port_share_the_agents_connection() -> None:
    one, two = resolved(MINIMAL["modbus"], MINIMAL["modbus"].replace("id: dev", "id: dev2"))
    pool = ConnectionPool()
    context = SourceContext(pool=pool, gateway="gw1")
    drivers = [source_for("modbus").driver(d.config, d, context) for d in (one, two)]
    assert pool.acquire(Link("tcp", "127.0.0.1", 5020)).users == 3  # both drivers and this probe
    for driver in drivers:
        asyncio.run(driver.close())
    pool.close_all()


def test_opcua_driver_takes_the_resolved_timing_and_names_the_gateway() -> None:
    (dev,) = resolved(MINIMAL["opcua"].replace("id: dev,", "id: dev, interval: 2s, timeout: 1500ms,"))
    driver = source_for("opcua").driver(dev.config, dev, SourceContext(pool=ConnectionPool(), gateway="gw7"))
    assert isinstance(driver, OpcUaDriver)
    endpoint = driver.endpoint
    assert (endpoint.interval, endpoint.timeout, endpoint.application_uri) == (2.0, 1.5, "urn:hacksky-edge:gw7")


@pytest.mark.parametrize("protocol", sorted(SOURCES))
def test_a_protocols_own_map_checks_report_file_line_and_field(protocol: str) -> None:
    device, error = INVALID[protocol]
    assert errors_of(device_map(device)) == [error]


@pytest.mark.parametrize("protocol", sorted(SOURCES))
def test_duplicate_point_names_are_refused_whatever_the_protocol(protocol: str) -> None:
    device = MINIMAL[protocol]
    point = device[device.index("points: [") + len("points: ["):-len("]}")]
    twice = device.replace(point, f"{point}, {point}")
    column = f"  - {twice}".rindex("{name: a") + len("{name: ") + 1  # the second point's name
    assert (f"plant.yaml:3:{column}: devices[0].points[1].name: duplicate point name 'a' (also points[0])"
            in errors_of(device_map(twice)))


def test_a_protocol_without_a_source_is_named_with_the_registered_ones() -> None:
    with pytest.raises(UnknownProtocolError, match=r"'bacnet' \(registered: modbus, opcua\)"):
        source_for("bacnet")
