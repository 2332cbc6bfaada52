"""Which device point feeds each model signal, checked when the device map is loaded."""

from __future__ import annotations

from collections.abc import Sequence

from agent.settings import AnyDevice, DetectionConfig

Problem = tuple[tuple[str | int, ...], str]


def _point_ref(ref: str, points: dict[tuple[str, str], bool]) -> tuple[str, str] | str:
    device, sep, point = ref.partition("/")
    if not sep:
        return f"{ref!r} is not device/point"
    if (device, point) not in points:
        return f"no point {point!r} on an enabled device {device!r}"
    return device, point


def wire(cfg: DetectionConfig, devices: Sequence[AnyDevice], signals: Sequence[str]
         ) -> tuple[dict[str, tuple[str, str]], tuple[str, str] | None, list[Problem]]:
    """Map every model signal to (device, point); also the clock point, and what is wrong."""
    points = {(d.id, p.name): True for d in devices if d.enabled for p in d.points}
    by_name: dict[str, list[str]] = {}
    for device, point in points:
        by_name.setdefault(point, []).append(device)
    problems: list[Problem] = []
    wired: dict[str, tuple[str, str]] = {}
    for name in cfg.signals:
        if name not in signals:
            problems.append((("detection", "signals", name), f"the model has no signal {name!r}"))
    for name in signals:
        if name in cfg.signals:
            found = _point_ref(cfg.signals[name], points)
            if isinstance(found, str):
                problems.append((("detection", "signals", name), found))
            else:
                wired[name] = found
        elif len(by_name.get(name, [])) == 1:
            wired[name] = (by_name[name][0], name)
        else:
            where = by_name.get(name, [])
            problems.append((("detection", "signals"), f"model signal {name!r} " + (
                f"matches points on several devices ({', '.join(where)}): map it explicitly" if where
                else "has no point of that name: map it under detection.signals")))
    clock = None
    if cfg.clock is not None:
        found = _point_ref(cfg.clock, points)
        if isinstance(found, str):
            problems.append((("detection", "clock"), found))
        else:
            clock = found
    return wired, clock, problems
