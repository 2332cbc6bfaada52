"""Every power meter's checks, and the feeder checks between them: polls in, attack/alert events out."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import tzinfo
from typing import Any

from agent.detect.incidents import IncidentTracker
from agent.detect.meters.check import LearnedCheck
from agent.detect.meters.energy import EnergyCheck
from agent.detect.meters.feeder import FeederCheck
from agent.detect.meters.hierarchy import feeder_groups
from agent.detect.meters.layout import MeterLayout, MeterPoll
from agent.detect.meters.physics import PhaseBalanceCheck, PhysicsCheck
from agent.detect.meters.profile import LoadProfile
from agent.detect.stream import Finding, Verdict
from agent.records import Event
from agent.settings import AnyDevice
from drivers.base import Reading

log = logging.getLogger(__name__)

#: an incident closes after this many polls without a finding
CLEAR_AFTER = 30
#: confidence (0-100) from which a detection also raises an alert (as ``detection.alert_from``)
ALERT_FROM = 50.0


def verdict(findings: list[Finding]) -> Verdict:
    """One poll's findings as the incident tracker takes them."""
    return Verdict(bool(findings), max((f.score for f in findings), default=0.0), tuple(findings))


class MeterWatch:
    """One meter's checks: physics, energy counter, phase balance (volts, amps) and load profile."""

    def __init__(self, layout: MeterLayout, zone: tzinfo | None = None) -> None:
        self.layout = layout
        self.checks: list[LearnedCheck] = []
        if PhysicsCheck.applies(layout):
            self.checks.append(PhysicsCheck(layout))
        if EnergyCheck.applies(layout):
            self.checks.append(EnergyCheck(layout))
        for quantity, points in (("voltage", layout.volts), ("current", layout.amps)):
            if len(points) > 1:
                self.checks.append(PhaseBalanceCheck(layout, quantity))
        self.profile = LoadProfile(layout.device, tuple(map(layout.signal, layout.power)), zone)
        self.load_z: float | None = None

    def step(self, poll: MeterPoll) -> Verdict:
        """The verdict on this poll."""
        findings = [f for c in self.checks if (f := c.step(poll.ts_us, poll)) is not None]
        self.load_z = None
        if poll.power is not None:
            self.load_z, finding = self.profile.step(poll.ts_us, poll.power)
            if finding is not None:
                findings.append(finding)
        return verdict(findings)


class MeterDetection:
    """All meters of a device map; ``previous`` (a reload) hands over what unchanged meters learned
    and their open incidents; ``state`` (a restart) reopens incidents saved with the buffer."""

    def __init__(self, devices: Sequence[AnyDevice], previous: MeterDetection | None = None,
                 state: dict[str, Any] | None = None, zone: tzinfo | None = None) -> None:
        enabled = [d for d in devices if d.enabled]
        layouts = {d.id: layout for d in enabled if (layout := MeterLayout.of(d)) is not None}
        kept = previous.watches if previous else {}
        self.watches: dict[str, MeterWatch] = {
            i: kept[i] if i in kept and kept[i].layout == layout else MeterWatch(layout, zone)
            for i, layout in layouts.items()}
        self.feeders: dict[str, FeederCheck] = {}
        old_feeders = previous.feeders if previous else {}
        for feeder, subs in feeder_groups(enabled).items():
            if feeder not in layouts or any(s not in layouts for s in subs):
                log.info("feeder %s not checked: it or one of its sub-meters is disabled or has no power point",
                         feeder)
                continue
            signals = tuple(layouts[m].signal(p) for m in (feeder, *subs) for p in layouts[m].power)
            old = old_feeders.get(feeder)
            self.feeders[feeder] = old if old is not None and old.signals == signals else FeederCheck(
                feeder, subs, signals)
        self._member_of: dict[str, list[FeederCheck]] = {}
        for check in self.feeders.values():
            for member in (check.feeder, *check.subs):
                self._member_of.setdefault(member, []).append(check)
        wanted = [f"meter/{i}" for i in self.watches] + [f"feeder/{i}" for i in self.feeders]
        old_trackers = previous.trackers if previous else {}
        saved = state or {}
        self.trackers: dict[str, IncidentTracker] = {name: old_trackers.get(name) or IncidentTracker(
            name, name.replace("/", " "), CLEAR_AFTER, ALERT_FROM, saved.get(name)) for name in wanted}
        #: trackers of meters no longer watched, with their incident still open: closed by :meth:`retired`
        self._retired = [t for name, t in old_trackers.items() if name not in self.trackers and t.open]

    def observe(self, device: str, readings: Sequence[Reading]) -> list[Event]:
        """Events of one poll of ``device`` (often none)."""
        watch = self.watches.get(device)
        if watch is None:
            return []
        poll = watch.layout.poll(readings)
        if poll is None:
            return []
        events = self.trackers[f"meter/{device}"].process(watch.step(poll), poll.ts_us)
        if poll.power is None:
            return events
        for check in self._member_of.get(device, ()):
            check.remember(device, poll.ts_us, poll.power)
            if device == check.feeder:
                finding = check.step(poll.ts_us, poll.power)
                events += self.trackers[f"feeder/{device}"].process(verdict([finding] if finding else []),
                                                                   poll.ts_us)
        return events

    def load_score(self, device: str) -> float | None:
        """The z-score of the device's last power reading against its load profile (None: still learning)."""
        watch = self.watches.get(device)
        return watch.load_z if watch else None

    def retired(self, ts_us: int) -> list[Event]:
        """Close the incidents of meters a reload removed (once)."""
        events: list[Event] = []
        for tracker in self._retired:
            tracker.clear_after = 0
            events += tracker.process(verdict([]), ts_us)
        self._retired = []
        return events

    def state(self) -> dict[str, Any]:
        """Open incidents, by tracker name (saved with the buffer, handed back as ``state`` at start)."""
        return {name: s for name, t in self.trackers.items() if (s := t.state()) is not None}
