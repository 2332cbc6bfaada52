"""What a source is: one protocol's device model, map checks and driver factory."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from agent.records import PointInfo
from agent.settings import DeviceBase, ResolvedDevice
from drivers.base import Driver

if TYPE_CHECKING:
    from drivers.modbus import ConnectionPool

#: a place in the device map: ``('devices', 1, 'points', 0, 'type')``
ConfigPath = tuple[str | int, ...]
#: one problem found by a map check, at its place in the map
MapIssue = tuple[ConfigPath, str]
#: where a device takes a password from: (its field in the map, the file, the environment variable)
PasswordSource = tuple[str, Path | None, str | None]

D = TypeVar("D", bound=DeviceBase)


@dataclass(frozen=True)
class SourceContext:
    """What the agent lends every driver it builds: the shared Modbus sockets, its gateway id."""

    pool: ConnectionPool
    gateway: str


def no_passwords(device: DeviceBase) -> list[PasswordSource]:
    """For protocols whose devices never log in with a password."""
    return []


def no_bus_issues(devices: Sequence[tuple[ConfigPath, Any]]) -> list[MapIssue]:
    """For protocols whose devices share nothing that must agree."""
    return []


def numeric_points(device: DeviceBase) -> tuple[PointInfo, ...]:
    """For protocols whose points are all numbers: name and unit of each."""
    return tuple(PointInfo(p.name, "number", p.unit, p.role) for p in getattr(device, "points", ()))


@dataclass(frozen=True)
class Source(Generic[D]):
    """One protocol, as the agent sees it; registered by name in :data:`agent.sources.SOURCES`."""

    protocol: str
    #: the device model of the map's entries with ``protocol: <protocol>``
    model: type[D]
    #: the rules of this protocol pydantic cannot express field by field: ``(device, its path)``
    map_issues: Callable[[D, ConfigPath], list[MapIssue]]
    #: the driver polling one device: ``(device, its resolved settings, the agent's context)``
    driver: Callable[[D, ResolvedDevice, SourceContext], Driver]
    #: where a device must find its passwords (checked readable at load)
    passwords: Callable[[D], list[PasswordSource]] = no_passwords
    #: the device's points as outputs announce them (name, kind of value, unit)
    points: Callable[[D], tuple[PointInfo, ...]] = numeric_points
    #: the rules across this protocol's devices (those sharing a link): ``[(its path, device), ...]``
    across: Callable[[Sequence[tuple[ConfigPath, D]]], list[MapIssue]] = no_bus_issues
