"""Sources: each protocol a device map can name, looked up by that name (a device's ``protocol``).

Adding a protocol ``p``:

1. ``drivers/p/``: its driver (a :class:`drivers.base.Driver`), knowing the wire and nothing of the agent;
2. ``agent/sources/p.py``: ``map_issues`` (the map rules pydantic cannot express field by field)
   and ``driver`` (from a resolved device to its driver), beside its device model in :mod:`agent.settings`;
3. one line in :data:`SOURCES` below;
4. one member ``Annotated[PDevice, Tag("p")]`` of the ``DeviceConfig`` union in :mod:`agent.settings`
   (tests/agent/test_sources.py fails while the union and :data:`SOURCES` disagree).
"""

from __future__ import annotations

from typing import Any

from agent.settings import ModbusDevice, OpcUaDevice
from agent.sources import modbus, opcua
from agent.sources.base import ConfigPath, MapIssue, PasswordSource, Source, SourceContext

__all__ = ["SOURCES", "ConfigPath", "MapIssue", "PasswordSource", "Source", "SourceContext",
           "UnknownProtocolError", "source_for"]

#: every protocol the agent can poll, by the name a device's ``protocol`` gives
SOURCES: dict[str, Source[Any]] = {
    "modbus": Source("modbus", ModbusDevice, modbus.map_issues, modbus.driver, points=modbus.points,
                     across=modbus.bus_issues),
    "opcua": Source("opcua", OpcUaDevice, opcua.map_issues, opcua.driver, opcua.passwords),
}


class UnknownProtocolError(LookupError):
    """A protocol with no entry in :data:`SOURCES`."""


def source_for(protocol: str) -> Source[Any]:
    """The source registered for ``protocol``; :class:`UnknownProtocolError` names the known ones."""
    source = SOURCES.get(protocol)
    if source is None:
        raise UnknownProtocolError(f"no source for protocol {protocol!r} (registered: {', '.join(SOURCES)}); "
                                   "add it to SOURCES in agent/sources/__init__.py")
    return source
