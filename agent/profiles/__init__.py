"""Meter profiles: the register maps of widely installed meters, shipped as YAML beside this module.

A device with ``profile: NAME`` takes the profile's points and register layout; it may override a
point's fields (by name) or add points of its own. Each profile names the manufacturer's document
and table it was taken from; tests/profiles checks each against values placed at the documented
addresses in the documented encoding.
"""

from __future__ import annotations

from functools import cache
from importlib import resources
from typing import Any

import yaml
from pydantic import Field

from agent.settings import PROFILE_NAME_PATTERN, MeterProfile, ProfileDevice


class Profile(MeterProfile):
    """A shipped meter's register map: its name, and the manufacturer's document it comes from."""

    name: str = Field(pattern=PROFILE_NAME_PATTERN)
    manufacturer: str
    model: str
    document: str = Field(description="the manufacturer's document, its version and table")


def _files() -> dict[str, Any]:
    return {f.name[:-5]: f for f in resources.files(__name__).iterdir() if f.name.endswith(".yaml")}


def names() -> list[str]:
    """The shipped profiles' names, sorted."""
    return sorted(_files())


@cache
def raw(name: str) -> dict[str, Any] | None:
    """The shipped profile ``name`` as its YAML mapping, or None."""
    file = _files().get(name)
    if file is None:
        return None
    data = yaml.safe_load(file.read_text(encoding="utf-8"))
    return data if isinstance(data, dict) else None


def load(name: str) -> Profile:
    """The shipped profile ``name``, validated; KeyError names the known ones."""
    data = raw(name)
    if data is None:
        raise KeyError(f"no profile {name!r} (known: {', '.join(names())})")
    return Profile.model_validate(data)


def merge_points(profile_points: list[dict[str, Any]],
                 own: list[Any]) -> list[tuple[Any, int | None, int | None]]:
    """The device's points: the profile's, each updated by the device's point of the same name, then
    the device's other points. Each comes with its index in the profile's list and in the device's
    (None where it is not from there)."""
    own_index = {str(p.get("name")): i for i, p in enumerate(own) if isinstance(p, dict)}
    merged: list[tuple[Any, int | None, int | None]] = []
    used: set[int] = set()
    for index, point in enumerate(profile_points):
        mine = own_index.get(str(point.get("name")))
        if mine is None:
            merged.append((dict(point), index, None))
        else:
            merged.append(({**point, **own[mine]}, index, mine))
            used.add(mine)
    merged.extend((point, None, i) for i, point in enumerate(own) if i not in used)
    return merged


__all__ = ["Profile", "ProfileDevice", "load", "merge_points", "names", "raw"]
