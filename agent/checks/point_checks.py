"""Per-point checks: min/max limits, stuck value, rate of change."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

from agent.checks.base import CheckState, Condition, PointKey, PointMemory, same_reading
from agent.settings import SignalConfig
from drivers.base import Reading


def _fmt(value: float, unit: str | None) -> str:
    return f"{value:.6g}{(' ' + unit) if unit else ''}"


class LimitCheck:
    """Active while a value is below ``limits.min`` or above ``limits.max``."""

    def __init__(self, points: Mapping[str, Mapping[str, SignalConfig]]) -> None:
        self._points = {dev: {n: (p, f"limit/{dev}/{n}") for n, p in pts.items() if p.limits}
                        for dev, pts in points.items()}
        self._quiet: set[str] = set()  # keys whose last report was "within limits"

    def state(self) -> CheckState:
        """Nothing to carry: after a reload "within limits" is reported once more, which closes an
        alert that the new limits no longer support."""
        return CheckState()

    def restore(self, state: CheckState) -> None:
        """Takes nothing over (see :meth:`state`)."""

    def evaluate(self, device: str, readings: Sequence[Reading]) -> Iterable[Condition]:
        """A condition per good reading of a limited point, except repeats of "within limits".

        Within limits is reported once (which also closes an alert restored from before a
        restart) and again only after a violation: the common case costs no allocation.
        """
        watched = self._points.get(device, {})
        quiet = self._quiet
        for r in readings:
            entry = watched.get(r.point)
            if entry is None or r.value is None:
                continue
            point, key = entry
            lim = point.limits
            assert lim is not None
            low = lim.min is not None and r.value < lim.min
            high = lim.max is not None and r.value > lim.max
            if not (low or high):
                if key not in quiet:
                    quiet.add(key)
                    yield Condition(key, False)
                continue
            quiet.discard(key)
            side, bound = ("below min", lim.min) if low else ("above max", lim.max)
            yield Condition(
                key=key, active=True, alert_type="limit_violation",
                severity=lim.severity, title=f"{device} {r.point} {side}",
                message=(f"{device} {r.point} = {_fmt(r.value, point.unit)} is {side} "
                         f"{_fmt(bound, point.unit)}" if bound is not None else ""),
                device=device, point=r.point, value=r.value)


class _PointMemoryCheck:
    """A check that remembers each watched point's last good reading (in ``_memory``)."""

    def __init__(self, watched: Mapping[PointKey, SignalConfig]) -> None:
        self._read_as = dict(watched)
        self._devices = {dev for dev, _ in watched}
        self._memory: dict[PointKey, PointMemory] = {}

    def state(self) -> CheckState:
        """The memory of every point, with the config it was read under."""
        return CheckState(dict(self._memory), {key: self._read_as[key] for key in self._memory})

    def restore(self, state: CheckState) -> None:
        """Keep the memory of the points this check watches and that are still read the same way."""
        self._memory = {key: memory for key, memory in state.memory.items()
                        if key in self._read_as and same_reading(state.read_as[key], self._read_as[key])}


class StuckCheck(_PointMemoryCheck):
    """Active once a value has not changed for ``stuck_after`` consecutive polls."""

    def __init__(self, points: Mapping[str, Mapping[str, SignalConfig]]) -> None:
        super().__init__({(dev, n): p for dev, pts in points.items() for n, p in pts.items() if p.stuck_after})
        self._limit = {key: p.stuck_after for key, p in self._read_as.items() if p.stuck_after}

    def evaluate(self, device: str, readings: Sequence[Reading]) -> Iterable[Condition]:
        """One condition per good reading of a watched point."""
        if device not in self._devices:
            return
        for r in readings:
            limit = self._limit.get((device, r.point))
            if limit is None or not r.good:
                continue
            value = r.value if r.value is not None else hash(r.text)
            last = self._memory.get((device, r.point))
            unchanged = last.unchanged + 1 if last is not None and last.value == value else 0
            self._memory[(device, r.point)] = PointMemory(value, r.ts_us, unchanged)
            yield Condition(
                key=f"stuck/{device}/{r.point}", active=unchanged + 1 >= limit, alert_type="stuck_value",
                severity="medium", title=f"{device} {r.point} stuck",
                message=f"{device} {r.point} unchanged for {unchanged + 1} polls", device=device,
                point=r.point, value=r.value)


class RateCheck(_PointMemoryCheck):
    """Active while a value moves faster than ``max_rate`` units per second."""

    def __init__(self, points: Mapping[str, Mapping[str, SignalConfig]]) -> None:
        super().__init__({(dev, n): p for dev, pts in points.items() for n, p in pts.items() if p.max_rate})
        self._limit = {key: p.max_rate for key, p in self._read_as.items() if p.max_rate}

    def evaluate(self, device: str, readings: Sequence[Reading]) -> Iterable[Condition]:
        """One condition per good reading after the first of a watched point."""
        if device not in self._devices:
            return
        for r in readings:
            limit = self._limit.get((device, r.point))
            if limit is None or r.value is None:
                continue
            last = self._memory.get((device, r.point))
            self._memory[(device, r.point)] = PointMemory(r.value, r.ts_us)
            if last is None or last.value is None or r.ts_us <= last.ts_us:
                continue
            rate = (r.value - last.value) / ((r.ts_us - last.ts_us) / 1e6)
            yield Condition(
                key=f"rate/{device}/{r.point}", active=abs(rate) > limit, alert_type="rate_of_change",
                severity="medium", title=f"{device} {r.point} changing too fast",
                message=f"{device} {r.point} changes {rate:+.4g}/s (max {limit:g}/s)",
                device=device, point=r.point, value=r.value)


class CommunicationCheck:
    """Active while a whole poll of a device failed (device unreachable or refusing)."""

    def state(self) -> CheckState:
        """Nothing to carry: each poll is judged alone."""
        return CheckState()

    def restore(self, state: CheckState) -> None:
        """Nothing to take over."""

    def evaluate(self, device: str, readings: Sequence[Reading]) -> Iterable[Condition]:
        """One condition per poll."""
        if not readings:
            return
        failed = [r for r in readings if not r.good]
        down = len(failed) == len(readings)
        reasons = sorted({r.quality.removeprefix("bad:") for r in failed})
        yield Condition(
            key=f"comms/{device}", active=down, alert_type="device_offline", severity="high",
            title=f"{device} not responding", message=f"{device}: every read failed ({', '.join(reasons)})",
            device=device)
