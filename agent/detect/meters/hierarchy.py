"""``feeder:`` in the device map: which meter each sub-meter hangs from, checked when the map loads."""

from __future__ import annotations

import difflib
from collections.abc import Sequence

from agent.settings import AnyDevice

Problem = tuple[tuple[str | int, ...], str]


def _has_power(device: AnyDevice) -> bool:
    return any(p.role == "power" for p in device.points)


def feeder_groups(devices: Sequence[AnyDevice]) -> dict[str, tuple[str, ...]]:
    """Feeder id -> its sub-meters' ids, in map order."""
    groups: dict[str, list[str]] = {}
    for d in devices:
        if d.feeder is not None:
            groups.setdefault(d.feeder, []).append(d.id)
    return {feeder: tuple(subs) for feeder, subs in groups.items()}


def feeder_issues(devices: Sequence[AnyDevice]) -> list[Problem]:
    """Unknown, non-meter or self feeders, meters without a power point, and loops."""
    by_id = {d.id: d for d in devices}
    issues: list[Problem] = []
    for index, d in enumerate(devices):
        if d.feeder is None:
            continue
        here = ("devices", index, "feeder")
        feeder = by_id.get(d.feeder)
        if d.feeder == d.id:
            issues.append((here, "a meter cannot be its own feeder"))
        elif feeder is None:
            close = difflib.get_close_matches(d.feeder, list(by_id), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            issues.append((here, f"no device {d.feeder!r} in the map{hint}"))
        elif feeder.type != "power_meter" or not _has_power(feeder):
            issues.append((here, f"{d.feeder!r} is not a power meter with a point of role power"))
        if d.type != "power_meter" or not _has_power(d):
            issues.append((here, "only a power meter with a point of role power can have a feeder"))
    reported: set[str] = set()
    for index, d in enumerate(devices):
        chain = [d.id]
        node = by_id.get(d.feeder) if d.feeder else None
        while node is not None and node.id not in chain:
            chain.append(node.id)
            node = by_id.get(node.feeder) if node.feeder else None
        if node is not None and node.id == d.id and len(chain) > 1 and not reported & set(chain):
            reported |= set(chain)
            issues.append((("devices", index, "feeder"), "feeders form a loop: " + " -> ".join([*chain, d.id])))
    return issues
